//! `Batch`: several `Send`, `Join`, `Leave` and `Disconnect` commands in one call, each
//! with its own result, through the paths of the unary methods. A `Send` whose target is
//! socket ids of one node is grouped: those of this node are emitted here at once; those
//! of other nodes are located in the socket directory (one Redis round trip for the whole
//! batch), then each node is sent all of its commands in one question (`Query::Deliver`)
//! and answers a result for each. Every other command runs as its unary method.

use std::{future::Future, pin::Pin};

use futures_util::future::join_all;
use prost::Message;
use socketioxide::{SocketIo, adapter::Adapter, socket::Sid};
use sockgate_proto::{
    BatchRequest, BatchResponse, BatchResult, SendRequest, batch_command::Command,
    batch_result::Reply,
};
use tonic::{Code, Status};
use tracing::{debug, info};

use super::{
    ControlContext, ControlLimits,
    error::ControlError,
    membership, methods, send,
    target::{self, Audience},
};
use crate::{
    auth::Caller,
    cluster::{
        NodeRef,
        messages::{Deliveries, Query},
    },
    config::Parser,
    metrics::METRICS,
};

/// What is done with one command.
enum Step {
    /// Refused before anything runs: no command, a missing scope, an invalid grouped `Send`.
    Refused(ControlError),
    /// A grouped `Send` to sockets of this node.
    Here(SendRequest),
    /// A grouped `Send` to sockets of another node.
    Away(NodeRef, SendRequest),
    /// Any other command: its unary path.
    Unary(Command),
}

/// A command's index in the batch and its result.
type Indexed = (usize, BatchResult);

/// Handles `Batch` for `caller` (`None`: control authentication is off).
pub async fn batch<A: Adapter>(
    ctx: &ControlContext<A>,
    caller: Option<&Caller>,
    request: BatchRequest,
) -> Result<BatchResponse, ControlError> {
    check(&request, &ctx.limits)?;
    let parallel = request.parallel;
    let names: Vec<&'static str> = request
        .commands
        .iter()
        .map(|c| c.command.as_ref().map_or("none", name))
        .collect();
    let steps = plan(ctx, caller, request).await;
    let away = steps.iter().filter(|s| matches!(s, Step::Away(..))).count();
    let mut results = vec![BatchResult::default(); steps.len()];
    let done = if parallel {
        at_once(ctx, steps).await
    } else {
        in_order(ctx, steps).await
    };
    for (index, result) in done {
        results[index] = result;
    }
    let mut failed = 0;
    for (name, result) in names.iter().zip(&results) {
        let code = Code::from(result.code as i32);
        failed += usize::from(code != Code::Ok);
        METRICS.batch_command(name, code);
    }
    if failed > 0 {
        info!(
            commands = results.len(),
            failed, away, parallel, "batch done; some commands failed"
        );
    } else {
        debug!(commands = results.len(), away, parallel, "batch done");
    }
    Ok(BatchResponse { results })
}

/// Refuses a batch over `control.max_batch_commands` or `control.max_batch_bytes`.
fn check(request: &BatchRequest, limits: &ControlLimits) -> Result<(), ControlError> {
    let commands = request.commands.len();
    if commands > limits.max_batch_commands {
        return Err(ControlError::invalid(format!(
            "commands has {commands} commands; the limit is {} (control.max_batch_commands): \
             split the batch",
            limits.max_batch_commands
        )));
    }
    let bytes = request.encoded_len();
    if bytes > limits.max_batch_bytes {
        return Err(ControlError::Exhausted(format!(
            "the batch is {bytes} bytes; the limit is {} (control.max_batch_bytes): split the \
             batch",
            limits.max_batch_bytes
        )));
    }
    Ok(())
}

/// The method a command stands for, also its metrics label.
fn name(command: &Command) -> &'static str {
    match command {
        Command::Send(_) => "Send",
        Command::Join(_) => "Join",
        Command::Leave(_) => "Leave",
        Command::Disconnect(_) => "Disconnect",
    }
}

/// Decides each command's path: checks its scope, groups the `Send`s that can be, and
/// locates the sockets of other nodes they name in one directory lookup. With recovery on,
/// nothing is grouped: a `Send` is recorded in the history, which orders the deliveries.
async fn plan<A: Adapter>(
    ctx: &ControlContext<A>,
    caller: Option<&Caller>,
    request: BatchRequest,
) -> Vec<Step> {
    let mut steps = Vec::with_capacity(request.commands.len());
    // Grouped sends whose sockets are all elsewhere: their step, and their ids.
    let mut elsewhere: Vec<(usize, Vec<Sid>)> = Vec::new();
    let grouping = ctx.cluster.recovery().is_none();
    for (index, command) in request.commands.into_iter().enumerate() {
        let Some(command) = command.command else {
            steps.push(Step::Refused(ControlError::invalid(format!(
                "commands[{index}] sets none of send, join, leave, disconnect"
            ))));
            continue;
        };
        let what = name(&command);
        let refusal = caller
            .zip(methods::scope_of(what))
            .and_then(|(caller, scope)| {
                caller.refusal(&format!("commands[{index}] ({what})"), scope)
            });
        if let Some(refusal) = refusal {
            steps.push(Step::Refused(ControlError::PermissionDenied(refusal)));
            continue;
        }
        let send = match command {
            Command::Send(send) if grouping && send::groupable(&send) => send,
            other => {
                steps.push(Step::Unary(other));
                continue;
            }
        };
        steps.push(match send::validate(&send, &ctx.limits) {
            Err(e) => Step::Refused(e),
            Ok(sids) => {
                let away = target::here(&ctx.io, &sids, Audience::Any).elsewhere;
                if away.is_empty() {
                    Step::Here(send)
                } else {
                    if away.len() == sids.len() && !ctx.cluster.is_single_node() {
                        elsewhere.push((index, away));
                    }
                    Step::Unary(Command::Send(send))
                }
            }
        });
    }
    if !elsewhere.is_empty() {
        Box::pin(locate(ctx, &mut steps, elsewhere)).await;
    }
    steps
}

/// Turns the grouped sends whose sockets the directory lists on one other node into
/// [`Step::Away`]; the others keep their unary path (it asks every node, authoritatively).
async fn locate<A: Adapter>(
    ctx: &ControlContext<A>,
    steps: &mut [Step],
    elsewhere: Vec<(usize, Vec<Sid>)>,
) {
    let sids: Vec<Sid> = elsewhere
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    let listings = match ctx.cluster.locate(&sids).await {
        Ok(Some(listings)) => listings,
        // No directory, or Redis down: the unary path answers (or fails) as it would.
        Ok(None) | Err(_) => return,
    };
    let mut listings = listings.into_iter();
    for (index, sids) in elsewhere {
        let mine: Vec<_> = listings.by_ref().take(sids.len()).collect();
        let Some(Some(first)) = mine.first() else {
            continue;
        };
        let node = first.node.clone();
        if !mine
            .iter()
            .all(|l| l.as_ref().is_some_and(|l| l.node == node))
        {
            continue;
        }
        let step = &mut steps[index];
        if let Step::Unary(Command::Send(send)) = step {
            *step = Step::Away(node, std::mem::take(send));
        }
    }
}

/// Runs the steps one after the other. The grouped sends of other nodes wait until a
/// unary command (or the end) comes: they touch no socket of this node, and each node
/// applies its own in order.
async fn in_order<A: Adapter>(ctx: &ControlContext<A>, steps: Vec<Step>) -> Vec<Indexed> {
    let mut done = Vec::with_capacity(steps.len());
    let mut pending = Vec::new();
    for (index, step) in steps.into_iter().enumerate() {
        match step {
            Step::Refused(e) => done.push((index, result(Err(e)))),
            Step::Here(send) => done.push((index, here(&ctx.io, ctx.parser, send).await)),
            Step::Away(node, send) => pending.push((index, node, send)),
            Step::Unary(command) => {
                done.extend(deliver(ctx, std::mem::take(&mut pending)).await);
                done.push((index, Box::pin(unary(ctx, command)).await));
            }
        }
    }
    done.extend(deliver(ctx, pending).await);
    done
}

type Running<'a> = Pin<Box<dyn Future<Output = Indexed> + Send + 'a>>;

/// Runs every step at once.
async fn at_once<A: Adapter>(ctx: &ControlContext<A>, steps: Vec<Step>) -> Vec<Indexed> {
    let mut done = Vec::new();
    let mut pending = Vec::new();
    let mut running: Vec<Running<'_>> = Vec::new();
    for (index, step) in steps.into_iter().enumerate() {
        match step {
            Step::Refused(e) => done.push((index, result(Err(e)))),
            Step::Here(send) => {
                running.push(Box::pin(async move {
                    (index, here(&ctx.io, ctx.parser, send).await)
                }));
            }
            Step::Away(node, send) => pending.push((index, node, send)),
            Step::Unary(command) => {
                running.push(Box::pin(async move { (index, unary(ctx, command).await) }));
            }
        }
    }
    let (ran, delivered) = futures_util::join!(join_all(running), deliver(ctx, pending));
    done.extend(ran);
    done.extend(delivered);
    done
}

/// A command's result as the unary method would have answered.
fn result(outcome: Result<Reply, ControlError>) -> BatchResult {
    match outcome {
        Ok(reply) => BatchResult {
            code: Code::Ok as u32,
            message: String::new(),
            reply: Some(reply),
        },
        Err(e) => {
            let status = Status::from(e);
            BatchResult {
                code: status.code() as u32,
                message: status.message().to_owned(),
                reply: None,
            }
        }
    }
}

async fn here<A: Adapter>(io: &SocketIo<A>, parser: Parser, send: SendRequest) -> BatchResult {
    result(send::send_here(io, parser, send).await.map(Reply::Send))
}

async fn unary<A: Adapter>(ctx: &ControlContext<A>, command: Command) -> BatchResult {
    result(match command {
        Command::Send(request) => {
            send::send(&ctx.io, &ctx.cluster, &ctx.limits, ctx.parser, request)
                .await
                .map(Reply::Send)
        }
        Command::Join(request) => membership::join(ctx, request).await.map(Reply::Join),
        Command::Leave(request) => membership::leave(ctx, request).await.map(Reply::Leave),
        Command::Disconnect(request) => membership::disconnect(ctx, request)
            .await
            .map(Reply::Disconnect),
    })
}

/// Sends each node its grouped sends in one question, all nodes at once, and reads a
/// result per send from its answer.
async fn deliver<A: Adapter>(
    ctx: &ControlContext<A>,
    pending: Vec<(usize, NodeRef, SendRequest)>,
) -> Vec<Indexed> {
    if pending.is_empty() {
        return Vec::new();
    }
    let mut groups: Vec<(NodeRef, Vec<usize>, Vec<SendRequest>)> = Vec::new();
    for (index, node, send) in pending {
        match groups.iter_mut().find(|(n, ..)| *n == node) {
            Some((_, indexes, sends)) => {
                indexes.push(index);
                sends.push(send);
            }
            None => groups.push((node, vec![index], vec![send])),
        }
    }
    let questions = groups
        .iter_mut()
        .map(|(node, _, sends)| {
            let sends = std::mem::take(sends);
            (node.clone(), Query::Deliver(Deliveries { sends }))
        })
        .collect();
    let answers = ctx.cluster.ask_each(questions).await;
    METRICS.control_batch_grouped.inc_by(
        groups
            .iter()
            .map(|(_, indexes, _)| indexes.len() as u64)
            .sum(),
    );
    let mut done = Vec::new();
    for ((_, indexes, _), answer) in groups.into_iter().zip(answers) {
        let failure = match answer {
            Ok(Some(answer)) if answer.results.len() == indexes.len() => {
                done.extend(indexes.into_iter().zip(answer.results));
                continue;
            }
            Ok(Some(answer)) => ControlError::Unavailable(format!(
                "node {} answered {} results for {} commands (does it run this version?)",
                answer.node_id,
                answer.results.len(),
                indexes.len()
            )),
            Ok(None) => ControlError::DeadlineExceeded(
                "the socket's node did not answer within cluster.request_timeout: the event \
                 may or may not have been delivered"
                    .into(),
            ),
            Err(e) => e.into(),
        };
        let status = result(Err(failure));
        done.extend(indexes.into_iter().map(|index| (index, status.clone())));
    }
    done
}

/// Emits the grouped sends of another node's batch to this node's sockets, in order: a
/// result for each.
pub async fn deliver_here<A: Adapter>(
    io: &SocketIo<A>,
    parser: Parser,
    sends: Vec<SendRequest>,
) -> Vec<BatchResult> {
    let mut results = Vec::with_capacity(sends.len());
    for send in sends {
        results.push(here(io, parser, send).await);
    }
    results
}
