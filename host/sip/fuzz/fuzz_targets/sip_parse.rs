//! Any bytes into the parser and the TCP framer: no panic, and whatever
//! parses must survive a write and a second parse.
#![no_main]

use callpark_sip::codec::{StreamFramer, parse, serialize};
use callpark_sip::message::HeaderView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = parse(data) {
        let wire = serialize(&message);
        let _ = parse(&wire);
        if let callpark_sip::message::Message::Request(r) = &message {
            let _ = (r.vias(), r.from(), r.to(), r.contact(), r.refer_to(), r.replaces());
        }
    }
    let mut framer = StreamFramer::new();
    framer.push(data);
    while let Ok(Some(frame)) = framer.next_frame() {
        let _ = parse(&frame);
    }
});
