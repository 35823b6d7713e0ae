//! Tests: urls.
use crate::helpers::*;
