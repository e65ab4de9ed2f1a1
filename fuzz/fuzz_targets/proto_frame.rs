//! twofoldd's frames come from every local user: no input may panic the parser, and a message
//! that decodes must survive being encoded and decoded again.
//!
//! Run with `cargo +nightly fuzz run proto_frame` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;

use twofold_proto::{parse_frame, read_frame, Request, Response};

fuzz_target!(|data: &[u8]| {
    // The streaming reader and the whole-frame parser agree on where a payload is.
    let streamed = read_frame(&mut &data[..]).ok();
    let Ok(payload) = parse_frame(data) else {
        return;
    };
    assert_eq!(streamed.as_deref().map(|p| &p[..]), Some(payload));
    if let Ok(request) = Request::decode(payload) {
        assert_eq!(Request::decode(&request.encode()).ok(), Some(request));
    }
    if let Ok(response) = Response::decode(payload) {
        assert_eq!(Response::decode(&response.encode()).ok(), Some(response));
    }
});
