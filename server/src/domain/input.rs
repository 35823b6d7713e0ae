//! Taking typed fields out of a JSON request body, collecting every problem, so one
//! 422 names all of them.

use serde_json::{Map, Value};

use super::values::Parse;
use crate::error::{Error, FieldErrors, Result};

/// Takes typed fields out of a JSON object, collecting every problem, so one 422
/// names all of them; whatever is left at the end is an unknown field.
pub struct Input {
    map: Map<String, Value>,
    errors: FieldErrors,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Input {
    pub fn new(map: Map<String, Value>) -> Self {
        Input {
            map,
            errors: FieldErrors::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn fail(&mut self, name: &str, reason: impl Into<String>) {
        self.errors
            .entry(name.to_owned())
            .or_insert_with(|| reason.into());
    }

    fn take_required(&mut self, name: &str) -> Option<Value> {
        let v = self.map.remove(name);
        if v.is_none() {
            self.fail(name, "is required");
        }
        v
    }

    fn as_string(&mut self, name: &str, v: Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.fail(name, format!("must be a string, not {}", type_name(&other)));
                None
            }
        }
    }

    fn as_i64(&mut self, name: &str, v: Value) -> Option<i64> {
        match v.as_i64() {
            Some(n) if n > 0 => Some(n),
            Some(_) => {
                self.fail(name, "must be a positive integer");
                None
            }
            None => {
                self.fail(name, format!("must be an integer, not {}", type_name(&v)));
                None
            }
        }
    }

    /// A required string field, parsed into its domain value.
    pub fn required<T: Parse>(&mut self, name: &str) -> Option<T> {
        let v = self.take_required(name)?;
        let s = self.as_string(name, v)?;
        self.parsed(name, s)
    }

    /// An optional string field, parsed into its domain value when present.
    pub fn optional<T: Parse>(&mut self, name: &str) -> Option<T> {
        let v = self.map.remove(name)?;
        let s = self.as_string(name, v)?;
        self.parsed(name, s)
    }

    fn parsed<T: Parse>(&mut self, name: &str, s: String) -> Option<T> {
        match T::parse(s) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.fail(name, reason);
                None
            }
        }
    }

    /// Records a problem found by a check outside this type.
    pub fn reject(&mut self, name: &str, reason: impl Into<String>) {
        self.fail(name, reason);
    }

    pub fn required_id(&mut self, name: &str) -> Option<i64> {
        let v = self.take_required(name)?;
        self.as_i64(name, v)
    }

    pub fn optional_bool(&mut self, name: &str) -> Option<bool> {
        match self.map.remove(name)? {
            Value::Bool(b) => Some(b),
            other => {
                self.fail(
                    name,
                    format!("must be a boolean, not {}", type_name(&other)),
                );
                None
            }
        }
    }

    pub fn optional_object(&mut self, name: &str) -> Option<Map<String, Value>> {
        match self.map.remove(name)? {
            Value::Object(m) => Some(m),
            other => {
                self.fail(
                    name,
                    format!("must be an object, not {}", type_name(&other)),
                );
                None
            }
        }
    }

    /// Ends parsing: unknown fields and every recorded problem become one 422.
    pub fn finish(mut self) -> Result<()> {
        let unknown: Vec<String> = std::mem::take(&mut self.map)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        for name in unknown {
            self.fail(&name, "unknown field");
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, Username};

    #[test]
    fn input_collects_every_problem_and_unknown_fields() {
        let map = serde_json::json!({"username": 123, "extra": true})
            .as_object()
            .cloned()
            .expect("object");
        let mut input = Input::new(map);
        assert_eq!(input.required::<Username>("username"), None);
        assert_eq!(input.required::<Email>("email"), None);
        let Err(Error::Invalid(errors)) = input.finish() else {
            panic!("expected 422")
        };
        assert!(errors["username"].contains("must be a string"));
        assert_eq!(errors["email"], "is required");
        assert_eq!(errors["extra"], "unknown field");
    }

    #[test]
    fn ids_must_be_json_integers() {
        let map = serde_json::json!({"a": "1", "b": 1.5, "c": -1, "d": 7})
            .as_object()
            .cloned()
            .expect("object");
        let mut input = Input::new(map);
        assert_eq!(input.required_id("a"), None);
        assert_eq!(input.required_id("b"), None);
        assert_eq!(input.required_id("c"), None);
        assert_eq!(input.required_id("d"), Some(7));
        assert!(input.finish().is_err());
    }
}
