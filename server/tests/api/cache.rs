//! Tests: cache.
use crate::helpers::*;
