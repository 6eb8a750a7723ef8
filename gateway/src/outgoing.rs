//! The arguments of an application event the gateway emits (a `Send`, or its replay to a
//! recovered socket): the JSON data, then each binary attachment, then, when the event
//! can be replayed, its offset (Socket.IO's connection state recovery reads the last
//! argument as the offset).

use bytes::Bytes;
use serde::{Serialize, ser::SerializeTuple};
use serde_json::value::RawValue;

/// Serialized as a tuple, so that Socket.IO sends each as an argument of its own.
pub struct Args<'a> {
    /// The JSON data, as the backend wrote it.
    pub data: Option<&'a RawValue>,
    /// The binary attachments.
    pub attachments: &'a [Bytes],
    /// The offset of a replayable event.
    pub offset: Option<&'a str>,
}

impl Serialize for Args<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = usize::from(self.data.is_some())
            + self.attachments.len()
            + usize::from(self.offset.is_some());
        let mut tuple = serializer.serialize_tuple(len)?;
        if let Some(data) = &self.data {
            tuple.serialize_element(data)?;
        }
        for attachment in self.attachments {
            tuple.serialize_element(attachment)?;
        }
        if let Some(offset) = &self.offset {
            tuple.serialize_element(offset)?;
        }
        tuple.end()
    }
}
