//! Who may ask what. Callers are told apart by the uid the kernel gives for their end of the
//! socket (`SO_PEERCRED`), never by anything they send.
//!
//! - root: everything (the module in sshd or sudo, the CLI run by an admin);
//! - the web server's account: everything, for any user (it runs the web login for all);
//! - anyone else: the status, and checking their own code (a screen locker, any PAM program
//!   running as the user). The answer is yes or no: no record, state or secret leaves.

use twofold_proto::Request;

/// Whether the peer `peer_uid`, whose passwd name is `peer_name` (`None`: no entry), may make
/// `request`, given the web server's uid (`None`: that account does not exist). `Err` holds the
/// reason given to the caller.
pub fn allowed(
    peer_uid: u32,
    peer_name: Option<&str>,
    web_uid: Option<u32>,
    request: &Request,
) -> Result<(), String> {
    if peer_uid == 0 || web_uid == Some(peer_uid) {
        return Ok(());
    }
    match request {
        Request::Status => Ok(()),
        Request::CheckCode { user, .. } => match peer_name {
            Some(name) if name == user => Ok(()),
            _ => Err("only your own code".into()),
        },
        Request::Load { .. } | Request::Update { .. } | Request::Replace { .. } => {
            Err("records are root's and the web server's only".into())
        }
        Request::CheckPassword { .. } => Err("password checks are the web server's only".into()),
        Request::List => {
            Err("the list of enrolled users is root's and the web server's only".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use twofold_core::state::State;
    use twofold_proto::Secret;

    use super::*;

    fn every_request(user: &str) -> Vec<Request> {
        vec![
            Request::Load { user: user.into() },
            Request::Update {
                user: user.into(),
                generation: 1,
                state: State::default(),
            },
            Request::Replace {
                user: user.into(),
                generation: 1,
                record: None,
                state: State::default(),
            },
            Request::Status,
            Request::CheckCode {
                user: user.into(),
                answer: Secret::new("123456"),
            },
            Request::CheckPassword {
                user: user.into(),
                password: Secret::new("pw"),
                rhost: None,
            },
            Request::List,
        ]
    }

    #[test]
    fn root_and_the_web_server_may_do_everything_for_anyone() {
        for request in every_request("alice") {
            assert_eq!(allowed(0, Some("root"), None, &request), Ok(()));
            assert_eq!(allowed(0, None, Some(998), &request), Ok(()));
            assert_eq!(
                allowed(998, Some("twofold-web"), Some(998), &request),
                Ok(())
            );
        }
    }

    #[test]
    fn a_user_may_ask_the_status_and_check_their_own_code_only() {
        for request in every_request("alice") {
            let verdict = allowed(1000, Some("alice"), Some(998), &request);
            match request {
                Request::Status | Request::CheckCode { .. } => assert_eq!(verdict, Ok(())),
                _ => assert!(verdict.is_err(), "{request:?}"),
            }
        }
    }

    #[test]
    fn another_users_code_is_refused() {
        let check = |user: &str| Request::CheckCode {
            user: user.into(),
            answer: Secret::new("123456"),
        };
        assert_eq!(
            allowed(1000, Some("alice"), Some(998), &check("bob")),
            Err("only your own code".into())
        );
        // Names are compared exactly: no alias of another spelling gets through.
        assert!(allowed(1000, Some("alice"), None, &check("ALICE")).is_err());
        assert!(allowed(1000, Some("alice"), None, &check("root")).is_err());
        // A uid without a passwd entry has no code of its own to check.
        assert!(allowed(1234, None, None, &check("alice")).is_err());
        assert_eq!(allowed(1234, None, None, &Request::Status), Ok(()));
    }

    #[test]
    fn a_missing_web_account_gives_nobody_its_rights() {
        let load = Request::Load {
            user: "alice".into(),
        };
        assert!(allowed(998, Some("www-data"), None, &load).is_err());
        assert!(allowed(998, Some("www-data"), Some(997), &load).is_err());
    }
}
