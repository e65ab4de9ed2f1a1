#!/usr/bin/python3
"""One SSH login with keyboard-interactive (or password) authentication, for the root-only
end-to-end tests.

Run with Debian's /usr/bin/python3 (python3-paramiko):

    ssh_login.py --port PORT --user NAME [--key FILE] [--password] [--command CMD]

The conversation is driven line by line over stdin and stdout, so the caller can compute an answer
from what the server has just shown (enroll on login shows a key, the answer is its code):

- for every keyboard-interactive request the server sends, one JSON line on stdout:
  {"event": "request", "title": ..., "instructions": ..., "prompts": [[text, echo], ...]};
- then the client reads one answer per prompt from stdin, one line each (end of input answers "");
- at the end, one JSON line {"event": "result", ...}: the outcome ("success", "denied", "error"),
  the userauth banner if the server sent one, what the remote command printed and its exit
  status, and the error if any.

With --password, the client uses the "password" method instead: it reads the password as the
first line of stdin (not from the command line, where any process could see it), sends it once
with no fallback to keyboard-interactive, and prints no request events (the method has none).

Exit status: 0 logged in (and the command ran), 1 authentication denied, 2 any other error.

Where sshd (OpenSSH 9.2, UsePAM) puts PAM text (TEXT_INFO, ERROR_MSG):
- text before a prompt is prepended to that prompt's own text, lines joined by newlines;
- text before a failure comes as the instructions of a request with no prompts;
- text before a success becomes a login message, sent as the userauth banner just before the
  success (paramiko keeps it for get_banner, it never reaches the handler).
With the password method, sshd answers every hidden prompt with the password, and all PAM text
goes into those login messages (so the client sees it only if the login succeeds).
"""

import argparse
import json
import socket
import sys

import paramiko

AUTH_DENIED = 1
ERROR = 2
TIMEOUT_SECS = 20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--key", help="an Ed25519 private key to offer first (publickey)")
    parser.add_argument(
        "--password",
        action="store_true",
        help="authenticate with the password method, the password being stdin's first line",
    )
    parser.add_argument("--command", default="id -un", help="run with exec_command")
    args = parser.parse_args()

    result = {"event": "result", "outcome": "error"}
    try:
        transport = connect(args.port)
    except Exception as e:  # noqa: BLE001 - any failure to connect is a setup error
        result["error"] = f"connect: {type(e).__name__}: {e}"
        emit(result)
        return ERROR
    try:
        return login(transport, args, result)
    finally:
        transport.close()


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECS)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = TIMEOUT_SECS
    transport.auth_timeout = TIMEOUT_SECS
    transport.start_client(timeout=TIMEOUT_SECS)
    return transport


def login(transport, args, result):
    code = authenticate(transport, args, result)
    result["banner"] = banner(transport)
    if code is not None:
        emit(result)
        return code
    try:
        run_command(transport, args.command, result)
    except Exception as e:  # noqa: BLE001
        result["error"] = f"after login: {type(e).__name__}: {e}"
        emit(result)
        return ERROR
    result["outcome"] = "success"
    emit(result)
    return 0


def authenticate(transport, args, result):
    """Returns None once authenticated, else the exit status (the result says why)."""
    if args.key:
        try:
            key = paramiko.Ed25519Key.from_private_key_file(args.key)
            result["publickey_partial"] = transport.auth_publickey(args.user, key)
        except paramiko.AuthenticationException as e:
            result["error"] = f"publickey: {type(e).__name__}: {e}"
            result["outcome"] = "denied"
            return AUTH_DENIED
    try:
        if args.password:
            # No fallback: a server without the password method must not get the password
            # through keyboard-interactive instead.
            transport.auth_password(args.user, read_line(), fallback=False)
        else:
            transport.auth_interactive(args.user, handler)
    except paramiko.BadAuthenticationType as e:
        # The server does not offer the method (now): a denial, not a PAM verdict.
        result["error"] = f"{type(e).__name__}: {e}"
        result["outcome"] = "denied"
        result["allowed_types"] = e.allowed_types
        return AUTH_DENIED
    except paramiko.AuthenticationException as e:
        result["error"] = f"{type(e).__name__}: {e}"
        result["outcome"] = "denied"
        return AUTH_DENIED
    except Exception as e:  # noqa: BLE001 - reported to the caller, who decides
        result["error"] = f"{type(e).__name__}: {e}"
        return ERROR
    if not transport.is_authenticated():
        result["error"] = "authentication returned without authenticating"
        return ERROR
    return None


def banner(transport):
    """The last userauth banner the server sent (sshd's login messages), or None."""
    text = transport.get_banner()
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text


def handler(title, instructions, prompts):
    emit(
        {
            "event": "request",
            "title": title,
            "instructions": instructions,
            "prompts": [[text, bool(echo)] for text, echo in prompts],
        }
    )
    return [read_line() for _ in prompts]


def read_line():
    """One line of stdin without its newline; "" at the end of input."""
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def run_command(transport, command, result):
    channel = transport.open_session(timeout=TIMEOUT_SECS)
    channel.settimeout(TIMEOUT_SECS)
    channel.exec_command(command)
    stdout = read_all(channel.recv)
    stderr = read_all(channel.recv_stderr)
    result["exit_status"] = channel.recv_exit_status()
    result["stdout"] = stdout.decode("utf-8", "replace")
    result["stderr"] = stderr.decode("utf-8", "replace")


def read_all(receive):
    data = b""
    while True:
        chunk = receive(65536)
        if not chunk:
            return data
        data += chunk


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
