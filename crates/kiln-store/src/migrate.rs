//! Versioned schema migrations, shared by both backends. A database records the number of
//! migrations applied to it; opening applies the ones it lacks, in order, and refuses a database
//! that has more than this binary knows (a newer Kiln wrote it, and an older one could corrupt
//! what it does not understand).

use crate::error::StoreError;

/// The migrations still to apply to a database at `found`, each with the version it leads to.
/// `migrations[i]` leads from version `i` to `i + 1`.
pub(crate) fn pending<'a>(
    path: &str,
    found: i64,
    migrations: &'a [&'a str],
) -> Result<Vec<(i64, &'a str)>, StoreError> {
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    if found > known {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found,
            known,
        });
    }
    Ok(migrations
        .iter()
        .enumerate()
        .skip(usize::try_from(found.max(0)).unwrap_or(0))
        .map(|(i, sql)| (i64::try_from(i).unwrap_or(i64::MAX) + 1, *sql))
        .collect())
}
