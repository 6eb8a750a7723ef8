//! `Batch`: several `Send`, `Join`, `Leave` and `Disconnect` commands in one call, each
//! with its own result, through the paths of the unary methods. A `Send` whose target is
//! socket ids of one node is grouped: those of this node are emitted here at once; those
//! of other nodes are located in the socket directory (one Redis round trip for the whole
//! batch), then each node is sent all of its commands in one question (`Query::Deliver`)
//! and answers a result for each. With recovery on in a cluster, the replayable `Send`s are
//! recorded in the shared history (their delivery) together, in one round trip, once the
//! socket ids they name are found connected (here, or in the directory, in one lookup).
//! Every other command runs as its unary method.

use std::{future::Future, pin::Pin};

use futures_util::future::join_all;
use prost::Message;
use socketioxide::{SocketIo, adapter::Adapter, socket::Sid};
use sockgate_proto::{
    BatchRequest, BatchResponse, BatchResult, SendRequest, SendResponse, batch_command::Command,
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
        Listing, NodeRef,
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
    /// A `Send` recorded in the cluster's shared history with the others of the batch.
    Record(SendRequest),
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

/// Which `Send`s of a batch are grouped, and how.
#[derive(Clone, Copy, PartialEq)]
enum Grouping {
    /// Recovery off: those to socket ids of one node, emitted by that node.
    ByNode,
    /// Recovery on in a cluster: every replayable one, recorded in the shared history
    /// (its delivery) in one round trip.
    Recorded,
    /// Recovery on, a single node: none (each is recorded and emitted under the history's
    /// lock, in memory).
    Off,
}

impl Grouping {
    fn of<A: Adapter>(ctx: &ControlContext<A>) -> Self {
        match ctx.cluster.recovery() {
            None => Grouping::ByNode,
            Some(recovery) if recovery.store().shared().is_some() => Grouping::Recorded,
            Some(_) => Grouping::Off,
        }
    }

    fn takes(self, send: &SendRequest) -> bool {
        match self {
            Grouping::ByNode => send::groupable(send),
            Grouping::Recorded => send::recordable(send),
            Grouping::Off => false,
        }
    }
}

/// Decides each command's path: checks its scope, groups the `Send`s that can be
/// ([`Grouping`]), and locates the sockets of other nodes they name in one directory
/// lookup.
async fn plan<A: Adapter>(
    ctx: &ControlContext<A>,
    caller: Option<&Caller>,
    request: BatchRequest,
) -> Vec<Step> {
    let mut steps = Vec::with_capacity(request.commands.len());
    // Grouped sends with sockets elsewhere: their step, and those ids.
    let mut elsewhere: Vec<(usize, Vec<Sid>)> = Vec::new();
    let grouping = Grouping::of(ctx);
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
            Command::Send(send) if grouping.takes(&send) => send,
            other => {
                steps.push(Step::Unary(other));
                continue;
            }
        };
        let sids = match send::validate(&send, &ctx.limits) {
            Ok(sids) => sids,
            Err(e) => {
                steps.push(Step::Refused(e));
                continue;
            }
        };
        let (step, lookup) = place(ctx, grouping, send, &sids);
        if !lookup.is_empty() {
            elsewhere.push((index, lookup));
        }
        steps.push(step);
    }
    if !elsewhere.is_empty() {
        Box::pin(locate(ctx, grouping, &mut steps, elsewhere)).await;
    }
    steps
}

/// A groupable send's step by what this node knows of its sockets `sids`, and the ids to
/// look up in the directory before it can be grouped (its step is unary until then).
fn place<A: Adapter>(
    ctx: &ControlContext<A>,
    grouping: Grouping,
    send: SendRequest,
    sids: &[Sid],
) -> (Step, Vec<Sid>) {
    let recorded = grouping == Grouping::Recorded;
    let audience = if recorded {
        Audience::Authenticated
    } else {
        Audience::Any
    };
    let found = target::here(&ctx.io, sids, audience);
    if !found.unauthenticated.is_empty() {
        // The unary path refuses it, naming them.
        return (Step::Unary(Command::Send(send)), Vec::new());
    }
    if found.elsewhere.is_empty() {
        let step = if recorded {
            Step::Record(send)
        } else {
            Step::Here(send)
        };
        return (step, Vec::new());
    }
    // By node, only a send whose sockets are all on another node is grouped.
    let whole = found.elsewhere.len() == sids.len() && !ctx.cluster.is_single_node();
    let lookup = if recorded || whole {
        found.elsewhere
    } else {
        Vec::new()
    };
    (Step::Unary(Command::Send(send)), lookup)
}

/// Groups the sends whose sockets elsewhere the directory lists: recorded when each of
/// them is listed as authenticated ([`Grouping::Recorded`]), else [`Step::Away`] when they
/// are all on one other node. The others keep their unary path (it asks every node,
/// authoritatively, and, with recovery on, counts a socket away as reachable).
async fn locate<A: Adapter>(
    ctx: &ControlContext<A>,
    grouping: Grouping,
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
        let Step::Unary(Command::Send(send)) = &mut steps[index] else {
            continue;
        };
        let send = std::mem::take(send);
        let authenticated = |l: &Option<Listing>| l.as_ref().is_some_and(|l| l.authenticated);
        steps[index] = match grouping {
            Grouping::Recorded if mine.iter().all(authenticated) => Step::Record(send),
            Grouping::ByNode if let Some(node) = one_node(&mine) => Step::Away(node, send),
            _ => Step::Unary(Command::Send(send)),
        };
    }
}

/// The node holding every socket of `listings`, if they are all on one.
fn one_node(listings: &[Option<Listing>]) -> Option<NodeRef> {
    let node = listings.first()?.as_ref()?.node.clone();
    listings
        .iter()
        .all(|l| l.as_ref().is_some_and(|l| l.node == node))
        .then_some(node)
}

/// Runs the steps one after the other. The grouped sends of other nodes wait until a
/// unary command (or the end) comes: they touch no socket of this node, and each node
/// applies its own in order.
async fn in_order<A: Adapter>(ctx: &ControlContext<A>, steps: Vec<Step>) -> Vec<Indexed> {
    let mut done = Vec::with_capacity(steps.len());
    let mut pending = Vec::new();
    let mut records = Vec::new();
    for (index, step) in steps.into_iter().enumerate() {
        match step {
            Step::Refused(e) => done.push((index, result(Err(e)))),
            Step::Here(send) => done.push((index, here(&ctx.io, ctx.parser, send).await)),
            Step::Away(node, send) => pending.push((index, node, send)),
            Step::Record(send) => records.push((index, send)),
            Step::Unary(command) => {
                done.extend(Box::pin(record(ctx, std::mem::take(&mut records))).await);
                done.extend(deliver(ctx, std::mem::take(&mut pending)).await);
                done.push((index, Box::pin(unary(ctx, command)).await));
            }
        }
    }
    done.extend(Box::pin(record(ctx, records)).await);
    done.extend(deliver(ctx, pending).await);
    done
}

type Running<'a> = Pin<Box<dyn Future<Output = Indexed> + Send + 'a>>;

/// Runs every step at once.
async fn at_once<A: Adapter>(ctx: &ControlContext<A>, steps: Vec<Step>) -> Vec<Indexed> {
    let mut done = Vec::new();
    let mut pending = Vec::new();
    let mut records = Vec::new();
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
            Step::Record(send) => records.push((index, send)),
            Step::Unary(command) => {
                running.push(Box::pin(async move { (index, unary(ctx, command).await) }));
            }
        }
    }
    let (ran, delivered, recorded) = futures_util::join!(
        join_all(running),
        deliver(ctx, pending),
        record(ctx, records)
    );
    done.extend(ran);
    done.extend(delivered);
    done.extend(recorded);
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

/// Records the batch's replayable sends in the cluster's shared history, in their order
/// and in one round trip.
async fn record<A: Adapter>(
    ctx: &ControlContext<A>,
    records: Vec<(usize, SendRequest)>,
) -> Vec<Indexed> {
    if records.is_empty() {
        return Vec::new();
    }
    let (indexes, sends): (Vec<usize>, Vec<SendRequest>) = records.into_iter().unzip();
    let Some(shared) = ctx.cluster.recovery().and_then(|r| r.store().shared()) else {
        // Planned only with a shared history; without one, each takes the unary path.
        let mut done = Vec::with_capacity(sends.len());
        for (index, send) in indexes.into_iter().zip(sends) {
            done.push((index, unary(ctx, Command::Send(send)).await));
        }
        return done;
    };
    let recorded = send::record(shared, &sends).await;
    METRICS.control_batch_grouped.inc_by(sends.len() as u64);
    indexes
        .into_iter()
        .zip(recorded)
        .map(|(index, recorded)| {
            let reply = recorded.map(|()| Reply::Send(SendResponse::default()));
            (index, result(reply))
        })
        .collect()
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
