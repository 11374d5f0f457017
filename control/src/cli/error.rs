//! How the CLI fails: one error type carrying the exit code and a message that
//! says what to do next. gRPC statuses map onto the documented exit codes, so a
//! CI job can tell a failed deploy (1) from bad input (2) and from a control
//! plane it cannot reach or is not allowed into (3).

use tonic::Code;

/// The documented exit codes of every `launch` command.
pub mod exit {
    /// Done; for a deploy: healthy.
    pub const OK: u8 = 0;
    /// The mission failed or was rolled back, or `--wait` timed out.
    pub const FAILED: u8 = 1;
    /// Bad input: fix the command, the files or the names.
    pub const USAGE: u8 = 2;
    /// The control plane is unreachable or refused the token.
    pub const UNREACHABLE: u8 = 3;
}

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: exit::FAILED,
            message: message.into(),
        }
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        CliError {
            code: exit::UNREACHABLE,
            message: message.into(),
        }
    }

    /// Maps a server status to an exit code, keeping the server's message and
    /// adding a hint where the status alone says what to do.
    pub fn from_status(status: &tonic::Status, addr: &str) -> Self {
        let message = status.message();
        // A status with a source was made on this side from a broken
        // connection (e.g. h2c sent to a TLS port), not sent by a server: it
        // is "unreachable", with the likely fix.
        if std::error::Error::source(status).is_some() && status.code() != Code::Unavailable {
            let hint = if addr.starts_with("http://") {
                "the control plane does not speak plain HTTP/2 there: if it serves TLS, use https:// in --addr (and --ca-cert)"
            } else {
                "is `launch server` running there? set --addr or LAUNCH_ADDR"
            };
            return CliError::unreachable(format!(
                "cannot talk to the control plane at {addr} ({message}): {hint}"
            ));
        }
        let code = exit_code(status.code());
        let message = match status.code() {
            // The server answered: it is the database behind it that is away.
            Code::Unavailable if message.contains("cannot reach its database") => {
                format!("{addr}: {message}")
            }
            Code::Unavailable => format!(
                "cannot reach the control plane at {addr} ({message}): is `launch server` running there? set --addr or LAUNCH_ADDR"
            ),
            Code::Unauthenticated if !message.contains("LAUNCH_TOKEN") => format!(
                "{message}: pass --token or set LAUNCH_TOKEN (the admin token is in <data-dir>/admin.token)"
            ),
            _ if message.is_empty() => format!("the control plane answered {:?}", status.code()),
            _ => message.to_owned(),
        };
        CliError { code, message }
    }
}

/// The exit code for a gRPC status code.
pub fn exit_code(code: Code) -> u8 {
    match code {
        Code::Ok => exit::OK,
        Code::InvalidArgument
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange => exit::USAGE,
        Code::Unauthenticated | Code::PermissionDenied | Code::Unavailable => exit::UNREACHABLE,
        _ => exit::FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_exit_codes() {
        let cases = [
            (Code::InvalidArgument, 2),
            (Code::NotFound, 2),
            (Code::FailedPrecondition, 2),
            (Code::AlreadyExists, 2),
            (Code::Unauthenticated, 3),
            (Code::PermissionDenied, 3),
            (Code::Unavailable, 3),
            (Code::Internal, 1),
            (Code::DeadlineExceeded, 1),
        ];
        for (code, expected) in cases {
            assert_eq!(exit_code(code), expected, "{code:?}");
        }
    }

    #[test]
    fn unreachable_and_unauthenticated_say_what_to_do() {
        let err = CliError::from_status(
            &tonic::Status::unavailable("connection refused"),
            "http://h:1",
        );
        assert_eq!(err.code, 3);
        assert!(
            err.message.contains("is `launch server` running there"),
            "{}",
            err.message
        );
        let broken = tonic::Status::from_error(Box::new(std::io::Error::other("reset")));
        let err = CliError::from_status(&broken, "http://h:1");
        assert_eq!(err.code, 3);
        assert!(err.message.contains("use https://"), "{}", err.message);
        let answered = CliError::from_status(&tonic::Status::unknown("reset"), "http://h:1");
        assert_eq!(
            answered.code, 1,
            "a status the server sent is not a broken connection"
        );
        let err = CliError::from_status(
            &tonic::Status::unauthenticated("unknown token"),
            "http://h:1",
        );
        assert!(err.message.contains("LAUNCH_TOKEN"), "{}", err.message);
    }

    #[test]
    fn a_control_plane_without_its_database_exits_3_saying_so() {
        let err = CliError::from_status(
            &tonic::Status::unavailable(
                "the control plane cannot reach its database: try again once it is back (the server's log says why)",
            ),
            "http://h:1",
        );
        assert_eq!(err.code, 3);
        assert_eq!(
            err.message,
            "http://h:1: the control plane cannot reach its database: try again once it is back (the server's log says why)"
        );
    }
}
