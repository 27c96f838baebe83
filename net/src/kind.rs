//! Frame kinds: the one thing both the frame layer and its errors name,
//! so it sits below both.

/// What a frame carries: a handshake, a request or its response, or an
/// output of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client to node, first frame of a connection: version and token.
    Hello = 1,
    /// Node to client: the handshake's answer.
    Welcome = 2,
    /// Client to node: one operation, with the client's request id.
    Request = 3,
    /// Node to client: the answer to the request of the same id.
    Response = 4,
    /// Node to client: an output (or barrier mark) of a subscription,
    /// tagged with the id of the request that subscribed.
    Output = 5,
}

impl Kind {
    pub(crate) fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Request,
            4 => Kind::Response,
            5 => Kind::Output,
            _ => return None,
        })
    }
}
