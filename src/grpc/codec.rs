//! The server's protobuf codec: prost's, except for what a request that does not decode is
//! answered.
//!
//! tonic's prost codec answers every decode error INTERNAL (gRPC's status table calls a parse
//! failure an internal error), so a client that sends a `string` field holding invalid UTF-8,
//! or bytes that are not protobuf at all, is told the node failed. It did not: the request is
//! bad, and docs/protocol.md §7 says bad input is INVALID_ARGUMENT with a message naming what
//! is wrong. prost's error names the message and field (`ResolveRequest.name: invalid string
//! value: data is not UTF-8 encoded`), so it reaches the client through the door's one
//! mapping (`RequestError::Undecodable` in [`super::status`]).
//!
//! Only the server side uses this codec (`build.rs` generates the server with it and the
//! client with prost's own): a response from a peer that does not decode is that peer's
//! failure, not a bad request of ours.

use std::marker::PhantomData;

use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

use super::convert::RequestError;
use super::status::ServiceError;

/// Encodes responses as prost does; decodes requests, answering INVALID_ARGUMENT when one
/// does not decode.
#[derive(Debug, Clone)]
pub struct RequestCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        RequestCodec {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder {
            _message: PhantomData,
        }
    }
}

/// Decodes one request message.
#[derive(Debug, Clone)]
pub struct RequestDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: prost::Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode_request(buf)
            .map(Some)
            .map_err(|error| ServiceError::from(error).into())
    }
}

/// One request message from its bytes, or what is wrong with them: the decoder above, and
/// what the fuzz targets feed arbitrary bytes.
pub fn decode_request<U: prost::Message + Default>(
    buf: impl bytes::Buf,
) -> Result<U, RequestError> {
    U::decode(buf).map_err(|error| {
        let text = error.to_string();
        let reason = text
            .strip_prefix("failed to decode Protobuf message: ")
            .unwrap_or(&text)
            .to_string();
        RequestError::Undecodable { reason }
    })
}
