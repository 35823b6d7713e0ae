//! Tests: lifecycle.
use crate::helpers::*;
