//! Every SQL statement in `db::statements` prepares against the migrated schema, so a
//! drift between the two fails here rather than at a first request.

use crate::helpers::*;

#[tokio::test]
async fn every_statement_prepares_against_the_migrated_schema() {
    let client = db().await;
    for sql in shortener::db::statements::all().chain(shortener::db::statements::seed()) {
        if let Err(e) = client.prepare(sql).await {
            panic!("statement does not prepare: {e}\n{sql}");
        }
    }
}

#[tokio::test]
async fn migrations_are_idempotent_under_the_advisory_lock() {
    // Three "replicas" migrating at once: all succeed, none re-applies anything.
    let run = || async {
        let (mut client, conn) = tokio_postgres::connect(database_url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        shortener::db::migrate::run(&mut client)
            .await
            .expect("migrate")
    };
    let (a, b, c) = tokio::join!(run(), run(), run());
    assert_eq!(a + b + c, 0, "the database was already migrated");
}
