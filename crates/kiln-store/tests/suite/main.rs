//! The store test suite, run against every backend: SQLite always, PostgreSQL when
//! `KILN_TEST_DATABASE_URL` names a server (see `fixture`). Each case is a function of a
//! fixture; `both!` makes one test of it per backend.

mod batches;
mod cases;
mod concurrency;
mod fixture;
mod logs;
mod migrations;
mod prefetch;
mod vuln;

pub use fixture::Fixture;

macro_rules! both {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test]
            fn $case() {
                crate::$module::$case(&crate::Fixture::sqlite());
            })*
        }
        mod on_postgres {
            $(#[test]
            fn $case() {
                if let Some(fixture) = crate::Fixture::postgres() {
                    crate::$module::$case(&fixture);
                }
            })*
        }
    };
}

both!(
    cases::concurrent_writes_all_commit_and_failures_roll_back_alone,
    cases::a_panicking_call_does_not_wedge_the_writer,
    cases::committed_writes_survive_reopening,
    cases::upsert_keeps_one_row_per_arn,
    cases::builds_are_claimed_once_in_queue_order,
    cases::leases_are_renewed_and_expire,
    cases::schedules_are_due_in_time_order_and_claimed_once,
    cases::count_rows_counts_one_kind_of_one_account_and_region,
    cases::lists_are_in_byte_order_and_resume_after_a_cursor,
    cases::tags_references_and_settings,
    cases::a_row_read_then_its_tags_gives_the_tags_stored_now,
    cases::rows_stored_with_their_tags_have_them,
    cases::deleting_a_row_removes_its_tags_and_references,
    cases::any_string_is_stored_as_it_came,
    logs::build_logs_are_read_from_any_offset_and_deleted,
    migrations::a_fresh_database_gets_the_newest_version,
    migrations::a_database_from_a_newer_kiln_is_refused,
    concurrency::creates_of_one_name_never_share_a_build_number,
    concurrency::one_client_token_creates_one_resource,
    concurrency::builds_are_never_claimed_twice,
    concurrency::a_due_run_is_claimed_once,
    concurrency::writes_are_seen_by_every_store_at_once,
    concurrency::stores_opening_at_once_migrate_once,
    concurrency::closed_connections_are_replaced,
    concurrency::committed_notifications_wake_listeners_across_reconnects,
    batches::each_call_of_a_batch_commits_or_rolls_back_alone,
    batches::a_cached_answer_never_hides_an_acknowledged_write,
    batches::the_generation_holds_while_nothing_is_written,
    batches::quoted_strings_survive_deferred_writes,
    prefetch::prefetched_reads_answer_what_the_reads_answer,
    prefetch::prefetched_reads_see_the_call_s_own_writes,
    prefetch::prefetched_answers_end_with_their_call,
    vuln::vuln_records_round_trip_and_are_replaced_with_their_keys,
    vuln::reads_in_an_import_see_its_own_writes,
    vuln::a_failed_import_leaves_the_previous_records,
    vuln::findings_are_listed_by_filter_and_cursor_in_their_scope,
    vuln::findings_are_counted_by_severity,
    vuln::findings_are_replaced_and_forgotten_per_image,
    vuln::findings_are_updated_one_by_one,
    vuln::bulk_import_and_lookup,
);

#[test]
fn sqlite_allows_one_process_per_database() {
    let fixture = Fixture::sqlite();
    let first = fixture.open();
    let second = kiln_store::Store::open(&fixture.database(), kiln_store::Sync::Normal);
    assert!(
        matches!(second, Err(kiln_store::StoreError::Open { .. })),
        "a second store on the same file must be refused"
    );
    drop(first);
    fixture.open();
}

#[test]
fn sqlite_databases_from_before_versions_open_unchanged() {
    migrations::unversioned_sqlite_database_opens_unchanged(&Fixture::sqlite());
}

#[test]
fn sqlite_rows_of_version_4_get_their_tags_beside_them() {
    migrations::version_4_sqlite_rows_get_their_tags_beside_them(&Fixture::sqlite());
}

#[test]
fn only_postgres_urls_name_a_database() {
    assert!(kiln_store::Database::parse("postgres://kiln@127.0.0.1:5432/kiln").is_ok());
    assert!(kiln_store::Database::parse("postgresql://kiln@db/kiln").is_ok());
    let err = kiln_store::Database::parse("mysql://root:hunter2@db/kiln").unwrap_err();
    assert!(err.contains("mysql://root:***@db/kiln"), "{err}");
}
