//! Fuzz target (proptest, bounded cases): whatever bytes arrive where an
//! agent or control message is expected, decoding returns an error or a
//! message — it never panics — and a decoded message encodes back to bytes
//! that decode to the same message.

use launch_proto::{AgentMessage, ControlMessage, DeployRequest};
use proptest::prelude::*;
use prost::Message;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(message) = AgentMessage::decode(bytes.as_slice()) {
            let again = AgentMessage::decode(message.encode_to_vec().as_slice()).expect("re-encoded message decodes");
            prop_assert_eq!(again, message);
        }
        let _ = ControlMessage::decode(bytes.as_slice());
        let _ = DeployRequest::decode(bytes.as_slice());
    }
}
