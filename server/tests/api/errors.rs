//! Tests: errors.
use crate::helpers::*;
