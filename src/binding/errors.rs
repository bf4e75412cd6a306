//! Errors at the JavaScript edge: the list of `err.code`s (defined once, by the core's
//! [`ErrorCode`]) and the sentences a JavaScript user reads when a send fails. The core's
//! own `Display` texts say what happened in protocol terms; the words about `send()` and
//! its options are written here, for the people who call it.

use napi_derive::napi;

use crate::core::error::{ErrorCode, SendError};

/// Every `err.code` an espial error of its own can carry (`ERR_ESPIAL_…`). `lib/errors.js`
/// refuses to make an error with any other code but Node's own `ERR_INVALID_ARG_TYPE` and
/// `ERR_INVALID_ARG_VALUE`, and a test compares this list with `index.d.ts`.
#[napi]
// Only the addon's registration calls it, which a test build leaves out.
#[cfg_attr(test, allow(dead_code))]
pub fn error_codes() -> Vec<String> {
    ErrorCode::ALL
        .iter()
        .map(|code| code.as_str().to_owned())
        .collect()
}

/// Why `send()` failed, for `lib/errors.js` to turn into an Error with this `code`.
#[napi(object)]
pub struct NativeSendError {
    pub code: String,
    pub message: String,
}

impl From<SendError> for NativeSendError {
    fn from(e: SendError) -> Self {
        NativeSendError {
            code: e.code().as_str().to_owned(),
            message: send_message(&e),
        }
    }
}

/// What `err.message` says of a refused send (tests and users rely on these words).
fn send_message(e: &SendError) -> String {
    match e {
        SendError::UnknownTarget(id) => {
            format!("espial: send(): target {id} is not a member of the cluster")
        }
        SendError::TooLarge { len, max } => format!(
            "espial: send(): the message is {len} bytes, over max_message_size ({max} bytes, this node's or a target's)"
        ),
        SendError::InvalidName => {
            "espial: send(): event names are 1 to 255 bytes of UTF-8".to_owned()
        }
        SendError::NotRunning => "espial: send(): the node is not running".to_owned(),
        SendError::TooManyRequests { max } => {
            format!("espial: request(): this node has {max} requests awaiting replies, the most it may")
        }
    }
}
