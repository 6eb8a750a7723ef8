//! Reads a MessagePack event (`edge.parser = "msgpack"`) into what the JSON parser gives:
//! the arguments as JSON values, each binary value replaced by a placeholder
//! (`{"_placeholder": true, "num": n}`, as socket.io-parser writes them) and collected, in
//! order, as an attachment. The rest of the edge then handles both encodings alike.

use std::fmt;

use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Deepest nesting of arrays and maps read.
const MAX_DEPTH: usize = 128;

/// The packet's arguments (the event name first) and its binary values.
pub fn event_args(packet_data: &[u8]) -> Result<(Vec<Value>, Vec<Bytes>), String> {
    let mut binaries = Vec::new();
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(packet_data);
    // serde_json's nesting limit, which bounds JSON events the same way.
    deserializer.set_max_depth(MAX_DEPTH);
    let value = JsonSeed(&mut binaries)
        .deserialize(&mut deserializer)
        .map_err(|e| e.to_string())?;
    match value {
        Value::Array(args) => Ok((args, binaries)),
        _ => Err("the packet's data is not an array".into()),
    }
}

/// Builds a JSON value, moving binary values out into the attachments.
struct JsonSeed<'a>(&'a mut Vec<Bytes>);

impl<'de> DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a MessagePack value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // NaN and infinities have no JSON form.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        let num = self.0.len();
        self.0.push(Bytes::copy_from_slice(v));
        Ok(serde_json::json!({ "_placeholder": true, "num": num }))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Value, S::Error> {
        // The size hint comes from the packet: a bound, not a promise.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(JsonSeed(&mut *self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Value, M::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(JsonSeed(&mut *self.0))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    /// An argument as a client writes it: a JSON-like value or binary (`bin`).
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Arg {
        Json(Value),
        Bin(Bytes),
        Map(BTreeMap<&'static str, Arg>),
    }

    fn encode(value: &impl serde::Serialize) -> Vec<u8> {
        rmp_serde::to_vec_named(value).unwrap()
    }

    #[test]
    fn values_read_as_json_and_binaries_become_placeholders() {
        let file = BTreeMap::from([("file", Arg::Bin(Bytes::from_static(&[4])))]);
        let packet = encode(&(
            "upload",
            Arg::Json(json!({"name": "a", "n": [1, -2, 1.5, null, true]})),
            Arg::Bin(Bytes::from_static(&[1, 2, 3])),
            Arg::Map(BTreeMap::from([("nested", Arg::Map(file))])),
        ));
        let (args, binaries) = event_args(&packet).unwrap();
        assert_eq!(
            args,
            [
                json!("upload"),
                json!({"name": "a", "n": [1, -2, 1.5, null, true]}),
                json!({"_placeholder": true, "num": 0}),
                json!({"nested": {"file": {"_placeholder": true, "num": 1}}}),
            ]
        );
        assert_eq!(
            binaries,
            [Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4])]
        );
    }

    #[test]
    fn data_that_is_no_array_or_has_non_string_keys_is_refused() {
        assert!(event_args(&encode(&json!({"a": 1}))).is_err());
        assert!(event_args(&encode(&("e", BTreeMap::from([(1u8, 2u8)])))).is_err());
        // An array of two whose first string is cut short.
        assert!(event_args(&[0x92, 0xa1]).is_err());
        let deep = (0..200).fold(json!(1), |inner, _| json!([inner]));
        assert!(event_args(&encode(&("e", deep))).is_err());
    }
}
