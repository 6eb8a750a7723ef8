//! The protobuf codec of the generated stubs (clients and servers): prost's, with smaller
//! per-call buffers.
//!
//! tonic allocates an encode and a decode buffer for every call, 8 KiB each by default.
//! Control messages are mostly a few hundred bytes, and to glibc's allocator an 8 KiB
//! request is a large one, for which it first consolidates its free lists: measured with
//! `perf` on the gateway, that was about 3 % of its CPU per unicast `Send`. The buffers
//! start at 512 bytes here (a small-bin size) and grow as needed for larger messages.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// First size of a call's encode and decode buffers.
pub const BUFFER_BYTES: usize = 512;
/// tonic's default: how much a server stream batches before it yields.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost encoding with [`BUFFER_BYTES`] buffers; `tonic_prost::ProstCodec` otherwise.
pub struct SmallBufferCodec<T, U>(PhantomData<fn() -> (T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
