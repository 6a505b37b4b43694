//! One API call, from validated input to JSON answer, inside one transaction.

use crate::convert::{store_error, StoreResultExt};
use crate::paging::{Pager, SIGNING_KEY_SETTING};
use crate::quotas::Quotas;
use kiln_core::clock::Clock;
use kiln_core::parents::ParentRules;
use kiln_core::Core;
use kiln_store::{Database, Read, StoreError, TokenKey, TokenRecord, Txn};
use kiln_wire::codec::with_request_id;
use kiln_wire::{dispatch, ApiError, ErrorKind, Operation, RequestContext};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How long idempotency tokens are kept. AWS promises nothing; EC2 keeps them at least a day.
pub const TOKEN_RETENTION_MILLIS: i64 = 7 * 24 * 3600 * 1000;

/// The API service: the [`Core`] it shares with the build worker and the scheduler (its
/// store, clock, work signal and parent rules, reached through `Deref`), and what only the
/// HTTP API has.
pub struct Service {
    pub core: Arc<Core>,
    pub pager: Pager,
    /// Per-account limits on resources and builds, checked in each create's transaction.
    pub quotas: Quotas,
    /// Where documents named by `uri` are read from (`crate::documents`).
    pub documents: crate::documents::DocumentSource,
    answers: Answers,
    /// Whether `Get*` answers are kept and served from `answers` (on by default; see
    /// [`Service::without_answer_cache`]).
    answer_cache: AtomicBool,
    /// On a shared database, the generation reads cached answers await (started at first use,
    /// once the core is shared).
    generation: std::sync::OnceLock<Option<Arc<crate::generation::SharedGeneration>>>,
}

impl Service {
    /// Opens the SQLite database under `data_dir` and loads (or creates) the pagination key.
    pub fn open(data_dir: &Path, sync: kiln_store::sqlite::Sync) -> Result<Service, StoreError> {
        Service::open_database(data_dir, None, sync)
    }

    /// Opens `database` (by default, SQLite under `data_dir`) and loads (or creates) the
    /// pagination key, which every server on a shared database then signs with.
    pub fn open_database(
        data_dir: &Path,
        database: Option<&Database>,
        sync: kiln_store::sqlite::Sync,
    ) -> Result<Service, StoreError> {
        let core = Core::open_database(data_dir, database, sync)?;
        let key = core.store.write(|tx| -> Result<String, StoreError> {
            if let Some(key) = tx.get_setting(SIGNING_KEY_SETTING)? {
                return Ok(key);
            }
            let key = Pager::generate_key();
            tx.put_setting(SIGNING_KEY_SETTING, &key)?;
            Ok(key)
        })??;
        let pager = Pager::from_hex(&key).ok_or_else(|| StoreError::Corrupt {
            arn: SIGNING_KEY_SETTING.to_string(),
            message: "the pagination key is not hex".to_string(),
        })?;
        Ok(Service {
            core: Arc::new(core),
            pager,
            quotas: Quotas::default(),
            documents: Default::default(),
            answers: Answers::default(),
            answer_cache: AtomicBool::new(true),
            generation: Default::default(),
        })
    }

    /// The core, to change before the service is shared.
    fn core_mut(&mut self) -> &mut Core {
        // Only the builders below change the core, and they run before `core` is cloned for
        // the worker and the scheduler; afterwards the core is shared and fixed.
        Arc::get_mut(&mut self.core).expect("the core is configured before it is shared")
    }

    /// The same service on another clock (a test clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Service {
        self.core_mut().clock = clock;
        self
    }

    /// The same service with the operator's import directories and registries.
    pub fn with_parent_rules(mut self, rules: ParentRules) -> Service {
        self.core_mut().parents = rules;
        self
    }

    /// The same service with the Regions that have a registry for container images.
    pub fn with_container_registries(
        mut self,
        registries: kiln_core::containers::ContainerRegistries,
    ) -> Service {
        self.core_mut().container_registries = registries;
        self
    }

    /// The same service with other quotas.
    pub fn with_quotas(mut self, quotas: Quotas) -> Service {
        self.quotas = quotas;
        self
    }

    /// The same service reading documents named by `uri` from `source`.
    pub fn with_documents(mut self, source: crate::documents::DocumentSource) -> Service {
        self.documents = source;
        self
    }

    /// The same service with no answer cache: every `Get*` call reads the database, as it would
    /// for a resource asked for the first time. For measuring the read path itself (several
    /// servers on one database share no cache, so most of their reads miss).
    pub fn without_answer_cache(self) -> Service {
        self.set_answer_cache(false);
        self
    }

    /// Turns the answer cache on or off while the service runs (the benchmark measures both on
    /// one database). Answers kept before it was turned off stay: each is served only while
    /// the store's generation is still the one it was read at, as always.
    pub fn set_answer_cache(&self, on: bool) {
        self.answer_cache.store(on, Ordering::Relaxed);
    }

    /// Whether `Get*` answers are kept and served from the answer cache.
    pub fn answer_cache(&self) -> bool {
        self.answer_cache.load(Ordering::Relaxed)
    }

    /// Validates `input`, runs the operation in its transaction and returns the response JSON
    /// (with `requestId` filled in where the response has one). In test and debug builds the
    /// response is checked against the model first (see [`checked_response`]).
    pub fn call(
        &self,
        op: Operation,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<String, ApiError> {
        let body = self.answer(op, ctx, input)?;
        if kiln_wire::validate::response_checks_enabled() {
            checked_response(op, &body)?;
        }
        Ok(body)
    }

    /// On a shared database, the answer cached for a `Get*` call, to check with
    /// [`Service::serve_cached`]; `None` when the call must run.
    pub fn cached_candidate(
        &self,
        op: Operation,
        ctx: &RequestContext,
        input: &Value,
    ) -> Option<CachedAnswer> {
        let def = op.def();
        if !(def.is_read_only()
            && def.name.starts_with("Get")
            && self.store.is_shared()
            && self.answer_cache())
        {
            return None;
        }
        let key = AnswerKey::new(op, ctx, input);
        let (generation, body) = self.answers.peek(&key, ctx.now_millis)?;
        Some(CachedAnswer {
            op,
            key,
            generation,
            body,
            request_id: ctx.request_id.clone(),
        })
    }

    /// The cached answer if it is still current, awaited without a thread of its own (see
    /// `crate::generation`); `None` when the call must run. A stale answer is dropped, so that
    /// the call does not check it again.
    pub async fn serve_cached(&self, cached: CachedAnswer) -> Option<String> {
        let generation = self
            .generation
            .get_or_init(|| {
                crate::generation::SharedGeneration::start(Arc::downgrade(&self.core))
                    .inspect_err(|e| tracing::warn!(error = %e, "no generation reader thread"))
                    .ok()
            })
            .as_ref()?;
        if generation.current().await != cached.generation {
            self.answers.forget(&cached.key, cached.generation);
            return None;
        }
        // Only operations whose answer has a requestId member get one (GetLifecycleExecution's
        // has none).
        let body = if cached.op.def().has_request_id {
            with_request_id(&cached.body, &cached.request_id)
        } else {
            cached.body.to_string()
        };
        // As `call` checks every answer it gives (in test and debug builds).
        if kiln_wire::validate::response_checks_enabled()
            && checked_response(cached.op, &body).is_err()
        {
            return None;
        }
        Some(body)
    }

    fn answer(
        &self,
        op: Operation,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<String, ApiError> {
        let def = op.def();
        let cacheable = def.is_read_only() && def.name.starts_with("Get");
        let key = (cacheable && self.answer_cache()).then(|| AnswerKey::new(op, ctx, &input));
        if let Some(body) = key.as_ref().and_then(|k| {
            self.answers
                .get(k, ctx.now_millis, || self.store.generation())
        }) {
            return Ok(if def.has_request_id {
                with_request_id(&body, &ctx.request_id)
            } else {
                body.to_string()
            });
        }
        kiln_wire::validate::validate(def.input, &input)?;
        let with_document;
        let ctx = match self.prefetch(op, ctx, &input)? {
            Some(document) => {
                with_document = RequestContext {
                    fetched_document: Some(document),
                    ..ctx.clone()
                };
                &with_document
            }
            None => ctx,
        };
        let mut read_at = None;
        // Without the cache a Get still runs here; only its answer is not kept. Reads named
        // ahead save round trips on a shared database; SQLite ignores them, so they are not
        // worked out there.
        let output = if cacheable {
            let reads = if self.store.is_shared() {
                crate::handlers::reads_ahead(op, ctx, &input)
            } else {
                Vec::new()
            };
            let (output, at) = self
                .store
                .read_at(&reads, |tx| dispatch(self, op, ctx, tx, input))
                .map_err(store_error)?;
            read_at = at;
            output?
        } else if def.is_read_only() {
            self.store
                .read(|tx| dispatch(self, op, ctx, tx, input))
                .map_err(store_error)??
        } else {
            // The call's token (if it has one) and its handler's first reads, in one round trip
            // on a shared database.
            let token = token_key(op, ctx, &input).filter(|_| def.idempotent);
            let mut reads: Vec<Read> = Vec::new();
            if self.store.is_shared() {
                reads.extend(token.clone().map(Read::Token));
                reads.extend(crate::handlers::reads_ahead(op, ctx, &input));
            }
            self.store
                .write(|tx| {
                    tx.prefetch(&reads).api()?;
                    match token {
                        Some(key) => self.idempotent(op, ctx, tx, key, input),
                        None => self.dispatch_within_quotas(op, ctx, tx, input),
                    }
                })
                .map_err(store_error)??
        };
        if !def.is_read_only() {
            self.work.notify();
        }
        // Only an answer whose generation is known can be told current later.
        if let (Some(key), Some(generation)) = (key, read_at) {
            self.answers
                .put(key, generation, ctx.valid_until.get(), &output);
        }
        Ok(if def.has_request_id {
            with_request_id(&output, &ctx.request_id)
        } else {
            output
        })
    }

    /// The same token with the same parameters answers the first response without running the
    /// operation again; with other parameters it is an `IdempotentParameterMismatchException`.
    /// The token is recorded in the same transaction as the operation's writes, and that
    /// transaction holds the single writer, so simultaneous retries cannot both run.
    fn idempotent(
        &self,
        op: Operation,
        ctx: &RequestContext,
        tx: &mut (dyn Txn + 'static),
        key: TokenKey,
        input: Value,
    ) -> Result<String, ApiError> {
        let params_hash = params_hash(&input);
        if let Some(previous) = tx.get_token(&key).api()? {
            if previous.created_millis >= ctx.now_millis - TOKEN_RETENTION_MILLIS {
                if previous.params_hash != params_hash {
                    return Err(ApiError::new(
                        ErrorKind::IdempotentParameterMismatchException,
                        format!(
                            "clientToken '{}' was already used for a {} request with different parameters",
                            key.token,
                            op.def().name
                        ),
                    ));
                }
                return Ok(previous.response);
            }
        }
        let output = self.dispatch_within_quotas(op, ctx, tx, input)?;
        tx.put_token(
            &key,
            &TokenRecord {
                params_hash,
                response: output.clone(),
                created_millis: ctx.now_millis,
            },
        )
        .api()?;
        Ok(output)
    }
}

impl Deref for Service {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Service {
    /// Reads the document a request names by `uri`, before its transaction. A request whose
    /// clientToken was used already is answered from the token (the first response, or a
    /// parameter mismatch) without reading the object again.
    fn prefetch(
        &self,
        op: Operation,
        ctx: &RequestContext,
        input: &Value,
    ) -> Result<Option<kiln_wire::FetchedDocument>, ApiError> {
        let Some((member, uri)) = crate::documents::uri_to_fetch(op, input) else {
            return Ok(None);
        };
        if let Some(key) = token_key(op, ctx, input).filter(|_| op.def().idempotent) {
            let previous = self
                .store
                .read(|tx| tx.get_token(&key))
                .map_err(store_error)?
                .api()?;
            // The token answers (the first response, or a parameter mismatch) without the
            // operation running: nothing to read.
            if previous.is_some_and(|p| p.created_millis >= ctx.now_millis - TOKEN_RETENTION_MILLIS)
            {
                return Ok(None);
            }
        }
        self.documents.fetch(ctx, member, uri).map(Some)
    }

    /// A write, then the quota its success adds to (`crate::quotas`), in the same transaction.
    fn dispatch_within_quotas(
        &self,
        op: Operation,
        ctx: &RequestContext,
        tx: &mut (dyn Txn + 'static),
        input: Value,
    ) -> Result<String, ApiError> {
        let output = dispatch(self, op, ctx, tx, input)?;
        self.quotas.check(op, ctx, tx)?;
        Ok(output)
    }
}

/// A response that does not match its output shape is a bug in Kiln that some client would trip
/// over, so it fails the request loudly (a `ServiceException` naming every violation, which
/// fails the test that made it) rather than reaching the caller.
fn checked_response(op: Operation, body: &str) -> Result<(), ApiError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| ApiError::service(format!("the response to {op:?} is not JSON: {e}")))?;
    kiln_wire::validate::validate_response(op.def().output, &value).map_err(|violations| {
        tracing::error!(operation = ?op, ?violations, "response does not match the model");
        ApiError::service(format!(
            "the response to {op:?} does not match the model: {}",
            violations.join("; ")
        ))
    })
}

/// The idempotency token of a request that has one.
fn token_key(op: Operation, ctx: &RequestContext, input: &Value) -> Option<TokenKey> {
    let token = input.get("clientToken").and_then(Value::as_str)?;
    Some(TokenKey {
        account: ctx.account_id.clone(),
        region: ctx.region.clone(),
        operation: op.def().name.to_string(),
        token: token.to_string(),
    })
}

/// A digest of the request's parameters. `serde_json` keeps object keys sorted, so the text is
/// canonical whatever order the client sent them in.
fn params_hash(input: &Value) -> String {
    let digest = Sha256::digest(input.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Answers of `Get*` calls, kept until the next commit. Clients poll Get operations (SDK
/// waiters, Terraform refreshes), and an answer costs far more to build (row, tags, decoding,
/// formatting) than to copy. Each answer carries the store generation it was read at, and is
/// served only while the store's generation, read after the request arrived, is still that
/// one: on SQLite this process's commit count (the store's lock file makes it the only
/// writer); on PostgreSQL a database-wide write counter every write transaction bumps, read
/// by a query sent after the request arrived, so an answer is never older than any write an
/// API server acknowledged before the request.
#[derive(Default)]
struct Answers {
    entries: Mutex<HashMap<AnswerKey, Answer>>,
}

/// An answer kept for a call, not yet known to be current (see [`Service::cached_candidate`]).
pub struct CachedAnswer {
    op: Operation,
    key: AnswerKey,
    generation: u64,
    body: Arc<str>,
    request_id: String,
}

/// Most answers kept; the cache is emptied when full (commits empty it far more often).
const MAX_ANSWERS: usize = 16 * 1024;

#[derive(PartialEq, Eq, Hash)]
struct AnswerKey {
    operation: Operation,
    account: String,
    region: String,
    input: String,
}

impl AnswerKey {
    fn new(operation: Operation, ctx: &RequestContext, input: &Value) -> AnswerKey {
        AnswerKey {
            operation,
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
            input: input.to_string(),
        }
    }
}

struct Answer {
    generation: u64,
    valid_until: Option<i64>,
    body: Arc<str>,
}

impl Answers {
    /// The answer kept for `key` if it is still current. `generation` is asked only when there
    /// is an answer to check (on PostgreSQL it costs a round trip), and without the lock held.
    fn get(&self, key: &AnswerKey, now: i64, generation: impl FnOnce() -> u64) -> Option<Arc<str>> {
        let (at, body) = self.peek(key, now)?;
        (generation() == at).then_some(body)
    }

    /// The answer kept for `key` and the generation it was read at, unless it expired.
    fn peek(&self, key: &AnswerKey, now: i64) -> Option<(u64, Arc<str>)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let answer = entries.get(key)?;
        if answer.valid_until.is_some_and(|t| now >= t) {
            return None;
        }
        Some((answer.generation, answer.body.clone()))
    }

    /// Drops the answer kept for `key` if it is still the one read at `generation`.
    fn forget(&self, key: &AnswerKey, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.get(key).is_some_and(|a| a.generation == generation) {
            entries.remove(key);
        }
    }

    fn put(&self, key: AnswerKey, generation: u64, valid_until: Option<i64>, body: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ANSWERS {
            entries.retain(|_, a| a.generation == generation);
            if entries.len() >= MAX_ANSWERS {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Answer {
                generation,
                valid_until,
                body: Arc::from(body),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(now_millis: i64) -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            now_millis,
            valid_until: Default::default(),
            ..Default::default()
        }
    }

    fn call(svc: &Service, op: Operation, now: i64, input: Value) -> Value {
        let out = svc.call(op, &ctx(now), input).expect("call succeeds");
        serde_json::from_str(&out).expect("JSON")
    }

    const NOV_26_2026_NOON: i64 = 1_795_694_400_000;

    #[test]
    fn cached_answers_follow_commits_and_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Service::open(dir.path(), kiln_store::sqlite::Sync::Normal).unwrap();
        let now = NOV_26_2026_NOON;
        let infra = call(
            &svc,
            Operation::CreateInfrastructureConfiguration,
            now,
            json!({"name": "infra", "instanceProfileName": "a", "clientToken": "t1"}),
        );
        let infra_arn = infra["infrastructureConfigurationArn"].clone();
        let get_infra = json!({ "infrastructureConfigurationArn": infra_arn });
        let first = call(
            &svc,
            Operation::GetInfrastructureConfiguration,
            now,
            get_infra.clone(),
        );
        assert_eq!(
            first["infrastructureConfiguration"]["instanceProfileName"],
            "a"
        );
        call(
            &svc,
            Operation::UpdateInfrastructureConfiguration,
            now,
            json!({"infrastructureConfigurationArn": infra_arn, "instanceProfileName": "b", "clientToken": "t2"}),
        );
        let second = call(
            &svc,
            Operation::GetInfrastructureConfiguration,
            now,
            get_infra,
        );
        assert_eq!(
            second["infrastructureConfiguration"]["instanceProfileName"], "b",
            "a commit invalidates"
        );

        call(
            &svc,
            Operation::CreateImageRecipe,
            now,
            json!({"name": "rcp", "semanticVersion": "1.0.0", "parentImage": "ami-0123456789abcdef0", "clientToken": "t3"}),
        );
        let pipeline = call(
            &svc,
            Operation::CreateImagePipeline,
            now,
            json!({
                "name": "pip", "clientToken": "t4",
                "imageRecipeArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/rcp/1.0.0",
                "infrastructureConfigurationArn": infra_arn,
                "schedule": {"scheduleExpression": "cron(0 * * * ? *)"}
            }),
        );
        let get = json!({ "imagePipelineArn": pipeline["imagePipelineArn"] });
        let at_noon = call(&svc, Operation::GetImagePipeline, now, get.clone());
        assert_eq!(
            at_noon["imagePipeline"]["dateNextRun"],
            "2026-11-26T13:00:00.000Z"
        );
        let before_one = call(
            &svc,
            Operation::GetImagePipeline,
            now + 3_599_000,
            get.clone(),
        );
        assert_eq!(
            before_one["imagePipeline"]["dateNextRun"],
            "2026-11-26T13:00:00.000Z"
        );
        // dateNextRun is the stored next run: it moves when the scheduler fires the run (a
        // commit, which invalidates cached answers), not when the clock passes it.
        let arn = pipeline["imagePipelineArn"].as_str().unwrap().to_string();
        let due = now + 3_600_000;
        svc.store
            .write(|tx| kiln_core::scheduled::fire(tx, &arn, due, due))
            .unwrap()
            .unwrap();
        let after_one = call(&svc, Operation::GetImagePipeline, now + 3_600_000, get);
        assert_eq!(
            after_one["imagePipeline"]["dateNextRun"], "2026-11-26T14:00:00.000Z",
            "a firing moves the next run"
        );
    }

    /// Without the answer cache every Get reads the database and nothing is kept; the answers
    /// are the ones the cached service gives, and follow every commit.
    #[test]
    fn without_the_answer_cache_gets_answer_the_same_and_keep_nothing() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cached = Service::open(dir_a.path(), kiln_store::sqlite::Sync::Normal).unwrap();
        let uncached = Service::open(dir_b.path(), kiln_store::sqlite::Sync::Normal)
            .unwrap()
            .without_answer_cache();
        assert!(cached.answer_cache() && !uncached.answer_cache());
        let now = NOV_26_2026_NOON;
        let kept = |svc: &Service| svc.answers.entries.lock().unwrap().len();
        let mut answers = Vec::new();
        for svc in [&cached, &uncached] {
            let infra = call(
                svc,
                Operation::CreateInfrastructureConfiguration,
                now,
                json!({"name": "infra", "instanceProfileName": "a", "clientToken": "t1"}),
            );
            let get = json!({ "infrastructureConfigurationArn": infra["infrastructureConfigurationArn"] });
            let first = call(
                svc,
                Operation::GetInfrastructureConfiguration,
                now,
                get.clone(),
            );
            let again = call(
                svc,
                Operation::GetInfrastructureConfiguration,
                now,
                get.clone(),
            );
            assert_eq!(first, again);
            call(
                svc,
                Operation::UpdateInfrastructureConfiguration,
                now,
                json!({"infrastructureConfigurationArn": infra["infrastructureConfigurationArn"],
                       "instanceProfileName": "b", "clientToken": "t2"}),
            );
            let after = call(svc, Operation::GetInfrastructureConfiguration, now, get);
            assert_eq!(
                after["infrastructureConfiguration"]["instanceProfileName"],
                "b"
            );
            answers.push((first, after));
        }
        assert_eq!(answers[0], answers[1], "the same answers either way");
        assert_eq!(kept(&uncached), 0, "nothing kept without the cache");
        assert!(kept(&cached) > 0);

        // Turned off and on again while running: what was kept before is served only while
        // it is current.
        cached.set_answer_cache(false);
        let infra_arn =
            "arn:aws:imagebuilder:us-east-1:123456789012:infrastructure-configuration/infra";
        call(
            &cached,
            Operation::UpdateInfrastructureConfiguration,
            now,
            json!({"infrastructureConfigurationArn": infra_arn, "instanceProfileName": "c", "clientToken": "t3"}),
        );
        cached.set_answer_cache(true);
        let current = call(
            &cached,
            Operation::GetInfrastructureConfiguration,
            now,
            json!({ "infrastructureConfigurationArn": infra_arn }),
        );
        assert_eq!(
            current["infrastructureConfiguration"]["instanceProfileName"],
            "c"
        );
    }

    /// Two servers on one PostgreSQL database: what one acknowledges, the other's next Get
    /// answers, though the other keeps cached answers (and serves them while nothing changes).
    #[test]
    fn cached_answers_on_a_shared_database_follow_every_servers_writes() {
        let Some(db) = kiln_store::testing::TestDatabase::create() else {
            return;
        };
        let database = Database::Postgres(db.url.clone());
        let open = |dir: &Path| {
            Service::open_database(dir, Some(&database), kiln_store::sqlite::Sync::Normal).unwrap()
        };
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (open(dir_a.path()), open(dir_b.path()));
        let now = NOV_26_2026_NOON;
        let infra = call(
            &a,
            Operation::CreateInfrastructureConfiguration,
            now,
            json!({"name": "infra", "instanceProfileName": "p0", "clientToken": "t0"}),
        );
        let get =
            json!({ "infrastructureConfigurationArn": infra["infrastructureConfigurationArn"] });
        let profile = |svc: &Service| {
            call(
                svc,
                Operation::GetInfrastructureConfiguration,
                now,
                get.clone(),
            )["infrastructureConfiguration"]["instanceProfileName"]
                .clone()
        };
        let cached = |svc: &Service| svc.answers.entries.lock().unwrap().len();
        for round in 1..=20 {
            assert_eq!(profile(&b), format!("p{}", round - 1), "round {round}");
            assert_eq!(cached(&b), 1, "B keeps the answer");
            assert_eq!(profile(&b), format!("p{}", round - 1), "served again");
            call(
                &a,
                Operation::UpdateInfrastructureConfiguration,
                now,
                json!({
                    "infrastructureConfigurationArn": infra["infrastructureConfigurationArn"],
                    "instanceProfileName": format!("p{round}"),
                    "clientToken": format!("t{round}"),
                }),
            );
            assert_eq!(
                profile(&b),
                format!("p{round}"),
                "round {round}: B answers A's acknowledged update"
            );
        }
    }

    /// CreateImagePipeline and GetImagePipeline name their reads ahead (`Txn::prefetch`), which
    /// on PostgreSQL answers them from one round trip: every outcome must be what SQLite, which
    /// ignores the names, answers.
    #[test]
    fn pipelines_read_ahead_answer_as_on_sqlite() {
        let sqlite_dir = tempfile::tempdir().unwrap();
        let sqlite = Service::open(sqlite_dir.path(), kiln_store::sqlite::Sync::Normal).unwrap();
        let expected = pipeline_outcomes(&sqlite);
        let gist: Vec<&str> = expected
            .iter()
            .map(|o| o.split([':', ' ']).next().unwrap_or_default())
            .collect();
        assert_eq!(
            gist,
            [
                "ok",
                "ok",
                "IdempotentParameterMismatchException",
                "ResourceAlreadyExistsException",
                "InvalidRequestException",
                "InvalidRequestException",
                "ok",
                "ok",
                "ok",
                "ResourceNotFoundException",
                "ResourceNotFoundException",
            ],
            "{expected:#?}"
        );
        assert!(expected[7].contains("rcp/1.x.x") && expected[7].contains(r#"{"k":"Pipe One"}"#));
        let Some(db) = kiln_store::testing::TestDatabase::create() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let database = Database::Postgres(db.url.clone());
        let postgres = Service::open_database(
            dir.path(),
            Some(&database),
            kiln_store::sqlite::Sync::Normal,
        )
        .unwrap();
        assert_eq!(pipeline_outcomes(&postgres), expected);
    }

    /// What a series of pipeline calls answers: "ok" with the response's gist, or the error.
    fn pipeline_outcomes(svc: &Service) -> Vec<String> {
        let now = NOV_26_2026_NOON;
        let arn = |kind: &str, rest: &str| {
            format!("arn:aws:imagebuilder:us-east-1:123456789012:{kind}/{rest}")
        };
        call(
            svc,
            Operation::CreateInfrastructureConfiguration,
            now,
            json!({"name": "infra", "instanceProfileName": "a", "clientToken": "i"}),
        );
        for version in ["1.0.0", "1.2.0", "2.0.0"] {
            call(
                svc,
                Operation::CreateImageRecipe,
                now,
                json!({"name": "rcp", "semanticVersion": version,
                       "parentImage": "ami-0123456789abcdef0", "clientToken": version}),
            );
        }
        let create = |name: &str, token: &str, recipe: &str, infra: &str| {
            json!({
                "name": name, "clientToken": token, "tags": {"k": name},
                "imageRecipeArn": arn("image-recipe", recipe),
                "infrastructureConfigurationArn": arn("infrastructure-configuration", infra),
            })
        };
        let creates = [
            ("Pipe One", "t1", "rcp/1.x.x", "infra"),
            // A retry answers the first response; a reuse with other parameters is refused.
            ("Pipe One", "t1", "rcp/1.x.x", "infra"),
            ("Pipe One", "t1", "rcp/2.0.0", "infra"),
            // The same name once normalised.
            ("pipe_one", "t2", "rcp/1.0.0", "infra"),
            ("two", "t3", "rcp/3.x.x", "infra"),
            ("two", "t4", "rcp/1.0.0", "absent"),
            ("two", "t5", "rcp/2.0.0", "infra"),
        ]
        .map(|(name, token, recipe, infra)| {
            (
                Operation::CreateImagePipeline,
                create(name, token, recipe, infra),
            )
        });
        let gets = [
            arn("image-pipeline", "pipe-one"),
            arn("image-pipeline", "two"),
            arn("image-pipeline", "absent"),
            // Another account's.
            "arn:aws:imagebuilder:us-east-1:210987654321:image-pipeline/two".to_string(),
        ]
        .map(|arn| {
            (
                Operation::GetImagePipeline,
                json!({ "imagePipelineArn": arn }),
            )
        });
        let mut created = 0;
        creates
            .into_iter()
            .chain(gets)
            .map(|(op, input)| match svc.call(op, &ctx(now), input) {
                Ok(out) => {
                    let out: Value = serde_json::from_str(&out).unwrap();
                    match op {
                        Operation::CreateImagePipeline => {
                            created += 1;
                            format!("ok {created}")
                        }
                        _ => format!(
                            "ok {} {} {}",
                            out["imagePipeline"]["name"],
                            out["imagePipeline"]["imageRecipeArn"],
                            out["imagePipeline"]["tags"]
                        ),
                    }
                }
                Err(e) => format!("{}: {}", e.code(), e.message),
            })
            .collect()
    }

    #[test]
    fn a_response_off_the_model_fails_the_call_naming_the_member() {
        let ok = r#"{"requestId":"r","image":{"tags":{},"outputResources":{"amis":[]}}}"#;
        checked_response(Operation::GetImage, ok).expect("an empty image matches");
        let bad = r#"{"requestId":"r","image":{"tags":{},"outputResources":{"amis":[]},"colour":"blue"}}"#;
        let e = checked_response(Operation::GetImage, bad).unwrap_err();
        assert_eq!(e.code(), "ServiceException");
        assert!(e.message.contains("'image.colour'"), "{}", e.message);
        let missing = r#"{"requestId":"r","image":{"outputResources":{"amis":[]}}}"#;
        let e = checked_response(Operation::GetImage, missing).unwrap_err();
        assert!(e.message.contains("'image.tags'"), "{}", e.message);
    }
}
