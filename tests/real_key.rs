//! With a real USB security key plugged in: `cargo test -p twofold-tests --test real_key --
//! --ignored --test-threads 1`, and touch the key when it blinks. The software authenticator is
//! not used here: the module and the CLI reach the key through `/dev/hidraw*`, as in production.

mod common;

use std::process::Command;

use common::*;

fn twofold(host: &Host, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_twofold-tested"))
        .arg("--config")
        .arg(&host.config)
        .args(args)
        .env_remove("TWOFOLD_TEST_FIDO_SOCKET")
        .output()
        .expect("run twofold")
}

#[test]
#[ignore = "needs a USB security key"]
fn a_real_key_registers_and_logs_in_with_a_touch() {
    let host = Host::new("[fido2]\ntouch_timeout_secs = 20\n");
    let user = me();
    host.enroll(&user);
    eprintln!("touch the key to register it");
    let added = twofold(&host, &["keys", "add", "real"]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    eprintln!("touch the key to log in");
    let login = host.login(&user, &[]);
    login.assert_rc(PAM_SUCCESS);
    assert!(login.prompts().is_empty());
    assert_eq!(host.state(&user).key_uses.len(), 1);
}

#[test]
#[ignore = "needs a USB security key"]
fn a_real_key_not_touched_is_cancelled_and_the_code_prompt_follows() {
    let host = Host::new("[fido2]\ntouch_timeout_secs = 20\n");
    let user = me();
    let enrolled = host.enroll(&user);
    eprintln!("touch the key to register it");
    assert!(twofold(&host, &["keys", "add", "real"]).status.success());
    host.write_config(&format!(
        "records = \"{}/{{user}}.toml\"\n[fido2]\ntouch_timeout_secs = 3\n",
        host.records.display()
    ));
    eprintln!("do NOT touch the key for 3 s");
    let login = host.login(&user, &[&enrolled.code(0)]);
    login.assert_rc(PAM_SUCCESS);
    assert_eq!(login.prompts(), [CODE_PROMPT]);
    assert!(login.infos().contains(&"No touch; enter a code instead."));
}
