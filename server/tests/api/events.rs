//! Tests: events.
use crate::helpers::*;
