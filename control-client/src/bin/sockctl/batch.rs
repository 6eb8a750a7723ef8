//! `sockctl batch`: commands read as JSON lines, run in `Batch` calls, a result printed per
//! command.

use std::io::BufRead;

use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};
use sockgate_client::{
    Client, Error, SendReport, Target, code_name,
    proto::{
        AckOptions, BatchCommand, DisconnectRequest, JoinRequest, LeaveRequest, SendRequest,
        batch_result::Reply,
    },
};

use crate::{output, print};

/// One line: a command named by its only key.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Send(SendLine),
    Join(RoomsLine),
    Leave(RoomsLine),
    Disconnect(DisconnectLine),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendLine {
    event: String,
    /// Any JSON value; absent: no data argument.
    data: Option<Box<RawValue>>,
    target: TargetLine,
    ack_timeout_ms: Option<u32>,
    #[serde(default)]
    count_recipients: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomsLine {
    target: TargetLine,
    rooms: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectLine {
    target: TargetLine,
    #[serde(default)]
    reason: String,
}

/// The fields of the API's `Target`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TargetLine {
    socket_ids: Vec<String>,
    rooms: Vec<String>,
    user_ids: Vec<String>,
    all: bool,
    except_rooms: Vec<String>,
    except_socket_ids: Vec<String>,
}

impl From<TargetLine> for Target {
    fn from(t: TargetLine) -> Self {
        Target {
            socket_ids: t.socket_ids,
            rooms: t.rooms,
            user_ids: t.user_ids,
            all: t.all,
            except_rooms: t.except_rooms,
            except_socket_ids: t.except_socket_ids,
        }
    }
}

impl From<Line> for BatchCommand {
    fn from(line: Line) -> Self {
        match line {
            Line::Send(s) => SendRequest {
                event: s.event,
                data_json: s.data.map(|d| d.get().to_owned()).unwrap_or_default(),
                attachments: Vec::new(),
                target: Some(s.target.into()),
                ack: s.ack_timeout_ms.map(|timeout_ms| AckOptions { timeout_ms }),
                count_recipients: s.count_recipients,
            }
            .into(),
            Line::Join(j) => JoinRequest {
                target: Some(j.target.into()),
                rooms: j.rooms,
            }
            .into(),
            Line::Leave(l) => LeaveRequest {
                target: Some(l.target.into()),
                rooms: l.rooms,
            }
            .into(),
            Line::Disconnect(d) => DisconnectRequest {
                target: Some(d.target.into()),
                reason: d.reason,
            }
            .into(),
        }
    }
}

/// Reads every command first (a bad line is a usage error, before anything is sent), with
/// its line number; blank lines are skipped.
pub fn read(input: impl BufRead) -> Result<Vec<(usize, BatchCommand)>, Error> {
    let mut commands = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| Error::InvalidArgument(format!("line {number}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .map_err(|e| Error::InvalidArgument(format!("line {number}: {e}")))?;
        commands.push((number, parsed.into()));
    }
    Ok(commands)
}

/// Runs the commands in calls of at most `size`, printing each result as it comes; the
/// exit code of the first failed command, 0 when none failed.
pub async fn run(
    client: &Client,
    json: bool,
    commands: Vec<(usize, BatchCommand)>,
    size: usize,
    parallel: bool,
    exit_code: impl Fn(&Error) -> u8,
) -> Result<u8, Error> {
    let mut code = 0;
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        let (numbers, chunk): (Vec<usize>, Vec<BatchCommand>) =
            commands.by_ref().take(size).unzip();
        let results = client.batch(chunk, parallel).await?;
        for (number, result) in numbers.into_iter().zip(results) {
            if let Err(e) = &result
                && code == 0
            {
                code = exit_code(e);
            }
            let printed = if json {
                print(&format!("{}\n", result_json(number, &result)))
            } else {
                print(&format!("{}\n", result_text(number, &result)))
            };
            if !printed {
                return Ok(code);
            }
        }
    }
    Ok(code)
}

fn status_of(error: &Error) -> (tonic::Code, String) {
    match error {
        Error::Status(status) => (status.code(), status.message().to_owned()),
        other => (tonic::Code::Unknown, other.to_string()),
    }
}

fn send_report(reply: &sockgate_client::proto::SendResponse) -> SendReport {
    SendReport {
        recipients: reply.recipients,
        acks: reply
            .acks
            .iter()
            .map(|a| {
                let data = serde_json::from_str(&a.data_json)
                    .unwrap_or_else(|_| Value::String(a.data_json.clone()));
                (a.socket_id.clone(), data)
            })
            .collect(),
        timed_out: reply.timed_out_socket_ids.clone(),
    }
}

fn result_json(line: usize, result: &Result<Reply, Error>) -> Value {
    match result {
        Ok(Reply::Send(reply)) => {
            json!({"line": line, "ok": true, "send": output::send_json(&send_report(reply))})
        }
        Ok(_) => json!({"line": line, "ok": true}),
        Err(e) => {
            let (code, message) = status_of(e);
            json!({"line": line, "ok": false, "code": code as i32, "status": code_name(code), "message": message})
        }
    }
}

fn result_text(line: usize, result: &Result<Reply, Error>) -> String {
    match result {
        Ok(Reply::Send(reply)) => {
            let report = send_report(reply);
            let acked = !report.acks.is_empty() || !report.timed_out.is_empty();
            let text = output::send_text(&report, acked);
            format!("{line}\tok\t{}", text.trim_end().replace('\n', "\n\t\t"))
        }
        Ok(Reply::Join(_)) => format!("{line}\tok\tjoined"),
        Ok(Reply::Leave(_)) => format!("{line}\tok\tleft"),
        Ok(Reply::Disconnect(_)) => format!("{line}\tok\tdisconnected"),
        Err(e) => {
            let (code, message) = status_of(e);
            format!("{line}\t{}\t{message}", code_name(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use sockgate_client::proto::batch_command::Command;

    use super::*;

    #[test]
    fn lines_become_commands() {
        let input = concat!(
            r#"{"send": {"event": "e", "data": {"n": 1}, "target": {"socket_ids": ["a"]}, "ack_timeout_ms": 5}}"#,
            "\n\n",
            r#"{"join": {"target": {"rooms": ["r"]}, "rooms": ["x"]}}"#,
            "\n",
            r#"{"disconnect": {"target": {"all": true}}}"#,
            "\n",
        );
        let commands = read(input.as_bytes()).unwrap();
        let numbers: Vec<usize> = commands.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 3, 4]);
        let Some(Command::Send(send)) = &commands[0].1.command else {
            panic!("{:?}", commands[0]);
        };
        assert_eq!(send.data_json, r#"{"n": 1}"#);
        assert_eq!(send.ack.as_ref().map(|a| a.timeout_ms), Some(5));
        assert!(matches!(commands[1].1.command, Some(Command::Join(_))));
        assert!(matches!(
            commands[2].1.command,
            Some(Command::Disconnect(_))
        ));
    }

    #[test]
    fn a_bad_line_names_its_number() {
        let err = read(&b"{\"join\": {\"target\": {}, \"rooms\": []}}\n{\"kick\": {}}\n"[..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
