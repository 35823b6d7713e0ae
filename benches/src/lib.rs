//! Shared pieces of the benches and the ceiling: the codes the load harness uses, and
//! stand-ins for server internals that are not public yet.
//!
//! Not here: the benches themselves (`benches/*.rs`) or the ceiling's server loop
//! (`src/bin/ceiling.rs`).

use std::path::Path;

use anyhow::Context;

/// `(short_code, target)` pairs from a TSV file (`code<TAB>target` per line), as
/// `scripts/perf.sh` dumps them from the seeded database.
///
/// # Errors
/// When the file cannot be read or a line has no tab.
pub fn load_codes(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, line)| {
            let (code, target) = line.split_once('\t').with_context(|| {
                format!(
                    "{} line {}: expected code<TAB>target",
                    path.display(),
                    n + 1
                )
            })?;
            Ok((code.to_owned(), target.to_owned()))
        })
        .collect()
}

/// The codes `url-shortener seed` gives URL ids `1..=n`, with a target of the seed's shape.
pub fn seed_codes(n: u64) -> Vec<(String, String)> {
    (1..=n)
        .map(|id| {
            let code = shortener::db::seed::seed_code(id);
            (code, format!("https://example.com/quiet/meadow/{id}"))
        })
        .collect()
}

/// The cache's key format, `{prefix}{kind}:{id}`.
///
/// The cache's own key builder.
pub use shortener::cache::key as cache_key;
