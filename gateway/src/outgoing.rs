//! The arguments of an application event the gateway emits (a `Send`, or its replay to a
//! recovered socket): the data, then each binary attachment, then, when the event can be
//! replayed, its offset (Socket.IO's connection state recovery reads the last argument
//! as the offset).

use bytes::Bytes;
use serde::{Serialize, ser::SerializeTuple};
use serde_json::{Value, value::RawValue};

use crate::config::Parser;

/// The event's data as the edge's parser writes it.
pub enum Data<'a> {
    /// JSON text, copied into the packet as it is (the default parser).
    Text(&'a RawValue),
    /// Native values (MessagePack: a `RawValue` would be written as a string in a map).
    Tree(Value),
}

impl<'a> Data<'a> {
    /// `text` (a `Send`'s `data_json`; empty: no data) checked, as `parser` writes it.
    pub fn parse(text: &'a str, parser: Parser) -> Result<Option<Self>, serde_json::Error> {
        if text.is_empty() {
            return Ok(None);
        }
        match parser {
            Parser::Default => serde_json::from_str::<&RawValue>(text).map(|r| Some(Data::Text(r))),
            Parser::Msgpack => serde_json::from_str(text).map(|v| Some(Data::Tree(v))),
        }
    }
}

impl Serialize for Data<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Text(raw) => raw.serialize(serializer),
            Data::Tree(value) => value.serialize(serializer),
        }
    }
}

/// Serialized as a tuple, so that Socket.IO sends each as an argument of its own.
pub struct Args<'a> {
    /// The data, as the backend wrote it.
    pub data: Option<Data<'a>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_data_is_a_tree_checked_as_json() {
        let Ok(Some(Data::Tree(tree))) = Data::parse(r#"{"a":[1]}"#, Parser::Msgpack) else {
            panic!("not a tree")
        };
        assert_eq!(tree, serde_json::json!({"a": [1]}));
        assert!(Data::parse("", Parser::Msgpack).unwrap().is_none());
        assert!(Data::parse("{bad", Parser::Msgpack).is_err());
        let Ok(Some(Data::Text(text))) = Data::parse(" [1]", Parser::Default) else {
            panic!("not text")
        };
        assert_eq!(text.get(), "[1]");
    }
}
