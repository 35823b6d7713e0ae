//! Tests: redirects.
use crate::helpers::*;
