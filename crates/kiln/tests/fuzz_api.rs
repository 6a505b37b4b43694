//! Model-driven fuzzing of the whole API against a real `kiln serve`.
//!
//! Every operation of the model gets valid requests, generated from its input shape and placed
//! in body, query and URI label per its http traits, and mutated requests: wrong JSON types,
//! sizes, odd strings and encodings, deep nesting, broken bodies, wrong methods and paths, odd
//! percent-encoding, duplicate and oversized headers, and SigV4 header mutations. Requests are
//! signed as the SDKs sign them, with the harness's key, so that once signatures are verified
//! valid requests still reach the handlers; auth mutations go on top.
//!
//! Whatever the request, the server must answer within `check::HANG`, never with a 5xx, and
//! every 4xx in the AWS error shape; afterwards it must still serve. The distribution of
//! statuses, error types and mutations is printed, so one sees how deep the requests reach.
//!
//! Deterministic: request `i` is generated from the seed and `i` alone (the ARNs of resources
//! earlier requests created, which valid inputs reuse, depend on timing). `KILN_FUZZ_SEED`,
//! `KILN_FUZZ_REQUESTS` (default 20,000) and `KILN_FUZZ_CONNECTIONS` (default 4) override;
//! `KILN_FUZZ_VERBOSE` prints every unmutated request's answer.

mod common;
mod fuzz;

use common::{raw_request_unsigned, RawResponse, Server, DEFAULT_KEY, REGION, SECRET};
use fuzz::check::{check, describe};
use fuzz::gen::{Gen, DOCKERFILE, WORKFLOW};
use fuzz::mutate;
use fuzz::sign::{sign_request, Signer};
use fuzz::wire::{self, Request};
use kiln_wire::schema::OperationDef;
use kiln_wire::OPERATIONS;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

const DEFAULT_SEED: u64 = 0x6b69_6c6e_0011;
const DEFAULT_REQUESTS: usize = 20_000;
const DEFAULT_CONNECTIONS: usize = 4;
/// The pool of existing resources' ARNs that valid inputs reuse stays this small.
const POOL_LIMIT: usize = 400;
/// Share of requests sent as generated, unmutated.
const VALID_SHARE: f64 = 0.2;

/// Operations whose inputs never name resources that exist: a successful call queues a real
/// build (or a scheduled one), whose parent image and component downloads may reach outside
/// this machine. Their handlers still see every mutation, and "not found".
const NO_REAL_RESOURCES: [&str; 4] = [
    "CreateImage",
    "CreateImagePipeline",
    "UpdateImagePipeline",
    "StartImagePipelineExecution",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Stats {
    statuses: BTreeMap<u16, usize>,
    error_types: BTreeMap<String, usize>,
    mutations: BTreeMap<String, usize>,
    /// Operations that answered 2xx at least once: valid inputs got through.
    succeeded: BTreeSet<&'static str>,
    /// What unmutated requests got, by operation: how far valid inputs reach.
    valid_outcomes: BTreeMap<&'static str, BTreeMap<String, usize>>,
    /// Answers that match a known finding, by finding.
    known: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
    /// Failures by kind (the first words of the failure), for the summary.
    failure_kinds: BTreeMap<String, usize>,
    failure_count: usize,
    slowest: Duration,
    /// Time spent generating requests, over all connections.
    generating: Duration,
}

struct Fuzzer {
    addr: SocketAddr,
    seed: u64,
    documents: Vec<String>,
    pool: Mutex<Vec<String>>,
    stats: Mutex<Stats>,
}

impl Fuzzer {
    fn signed(&self, method: &str, path: &str, body: Value) -> Request {
        let mut req = Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
            label: path.to_string(),
            signed: false,
        };
        self.sign(&mut req, &default_signer());
        req
    }

    fn sign(&self, req: &mut Request, signer: &Signer) {
        let host = self.addr.to_string();
        let headers = vec![
            ("host".to_string(), host.clone()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        if let Some(auth) = sign_request(signer, &host, &req.method, &req.path, &headers, &req.body)
        {
            req.headers.extend(auth);
            req.signed = true;
        }
    }

    fn send(&self, req: &Request) -> Result<(RawResponse, Duration), String> {
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let started = Instant::now();
        catch_unwind(AssertUnwindSafe(|| {
            raw_request_unsigned(self.addr, &req.method, &req.path, &headers, &req.body)
        }))
        .map(|resp| (resp, started.elapsed()))
        .map_err(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!(
                "no answer after {:?} (server dead or hung?): {what}",
                started.elapsed()
            )
        })
    }

    /// Keeps the ARNs a successful answer names, for later valid inputs.
    fn collect_arns(&self, body: &str) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        for part in body.split('"').filter(|p| p.starts_with("arn:aws")) {
            if pool.len() < POOL_LIMIT && !pool.iter().any(|a| a == part) {
                pool.push(part.to_string());
            }
        }
    }

    /// Creates a few resources of every kind the fuzzer can safely reuse, so that valid
    /// inputs find things to get, tag, list, update and delete.
    fn seed_resources(&self) {
        let component = self.create(
            "/CreateComponent",
            json!({"name": "fuzz-component", "semanticVersion": "1.0.0", "platform": "Linux",
                   "data": HELLO_COMPONENT, "clientToken": "fuzz-seed-1"}),
            "componentBuildVersionArn",
        );
        self.create(
            "/CreateInfrastructureConfiguration",
            json!({"name": "fuzz-infra", "instanceProfileName": "fuzz-profile",
                   "clientToken": "fuzz-seed-2"}),
            "infrastructureConfigurationArn",
        );
        self.create(
            "/CreateDistributionConfiguration",
            json!({"name": "fuzz-dist", "clientToken": "fuzz-seed-3", "distributions": [
                {"region": REGION,
                 "amiDistributionConfiguration": {"name": "out-{{ imagebuilder:buildDate }}"}}]}),
            "distributionConfigurationArn",
        );
        self.create(
            "/CreateImageRecipe",
            json!({"name": "fuzz-recipe", "semanticVersion": "1.0.0",
                   "components": [{"componentArn": component}],
                   "parentImage": "ami-0123456789abcdef0", "clientToken": "fuzz-seed-4"}),
            "imageRecipeArn",
        );
        self.create(
            "/CreateWorkflow",
            json!({"name": "fuzz-workflow", "semanticVersion": "1.0.0", "type": "TEST",
                   "data": WORKFLOW, "clientToken": "fuzz-seed-5"}),
            "workflowBuildVersionArn",
        );
        self.create(
            "/CreateContainerRecipe",
            json!({"containerType": "DOCKER", "name": "fuzz-container", "semanticVersion": "1.0.0",
                   "components": [{"componentArn": component}], "parentImage": "busybox",
                   "targetRepository": {"service": "ECR", "repositoryName": "fuzz"},
                   "dockerfileTemplateData": DOCKERFILE,
                   "clientToken": "fuzz-seed-6"}),
            "containerRecipeArn",
        );
    }

    fn create(&self, path: &str, body: Value, arn_member: &str) -> String {
        let req = self.signed("PUT", path, body);
        let (resp, _) = self.send(&req).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(resp.status, 200, "seeding {path}: {resp:?}");
        self.collect_arns(&resp.body);
        serde_json::from_str::<Value>(&resp.body)
            .ok()
            .and_then(|v| {
                v.get(arn_member)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("{path} answered no {arn_member}: {}", resp.body))
    }

    /// Request `index`: a valid request for operation `index % 77`, mutated or not.
    fn generate(&self, index: usize) -> Request {
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let def: &OperationDef = &OPERATIONS[index % OPERATIONS.len()];
        let pool = if NO_REAL_RESOURCES.contains(&def.name) {
            Vec::new()
        } else {
            self.pool.lock().unwrap_or_else(|p| p.into_inner()).clone()
        };
        let some_arn = if pool.is_empty() {
            format!("arn:aws:imagebuilder:{REGION}:123456789012:image/x/1.0.0/1")
        } else {
            pool[rng.gen_range(0..pool.len())].clone()
        };
        let value = Gen {
            rng: &mut rng,
            pool: &pool,
            documents: &self.documents,
            operation: def.name,
        }
        .value(def.input, "", 0);
        let Value::Object(mut input) = value else {
            unreachable!("input shapes are structures");
        };

        // Which levels to mutate: none for a share of valid requests, else one to three.
        let levels: Vec<u32> = if rng.gen_bool(VALID_SHARE) {
            Vec::new()
        } else {
            (0..rng.gen_range(1..=3))
                .map(|_| rng.gen_range(0..10))
                .collect()
        };
        let mut names = Vec::new();
        for _ in levels.iter().filter(|l| **l < 4) {
            names.push(mutate::input(&mut input, &mut rng));
        }
        let mut req = wire::encode(def, &input);
        mutate::expand_placeholders(&mut req, &mut rng);
        for level in &levels {
            match level {
                4 | 5 => names.push(mutate::body(&mut req, &mut rng)),
                6 | 7 => names.push(mutate::request(&mut req, &mut rng, &some_arn)),
                _ => {}
            }
        }

        // Valid signatures in other scopes and at other times are auth mutations too.
        let now = SystemTime::now();
        let signer = match rng.gen_range(0..40) {
            0 => {
                names.push("auth-unknown-key");
                Signer {
                    key: "AKIDUNKNOWN",
                    secret: SECRET,
                    region: REGION,
                    time: now,
                }
            }
            1 => {
                names.push("auth-other-region");
                Signer {
                    key: DEFAULT_KEY,
                    secret: SECRET,
                    region: "eu-west-1",
                    time: now,
                }
            }
            2 => {
                names.push("auth-skewed-time");
                let skew = Duration::from_secs(
                    *[900, 3600, 8 * 86_400]
                        .get(rng.gen_range(0..3))
                        .unwrap_or(&900),
                );
                let time = if rng.gen() { now - skew } else { now + skew };
                Signer {
                    key: DEFAULT_KEY,
                    secret: SECRET,
                    region: REGION,
                    time,
                }
            }
            _ => default_signer_at(now),
        };
        self.sign(&mut req, &signer);
        for _ in levels.iter().filter(|l| **l >= 8) {
            names.push(mutate::auth(&mut req, &mut rng));
        }
        names.retain(|n| *n != "none");
        req.label = if names.is_empty() {
            "valid".to_string()
        } else {
            names.join("+")
        };
        req
    }

    fn run_one(&self, index: usize) {
        let started = Instant::now();
        let req = self.generate(index);
        let generating = started.elapsed();
        let def = &OPERATIONS[index % OPERATIONS.len()];
        let outcome = self.send(&req);
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.generating += generating;
        for name in req.label.split('+') {
            *stats.mutations.entry(name.to_string()).or_default() += 1;
        }
        let verdict = match &outcome {
            Ok((resp, elapsed)) => {
                *stats.statuses.entry(resp.status).or_default() += 1;
                if let Some(t) = resp.header("x-amzn-errortype") {
                    *stats.error_types.entry(t.to_string()).or_default() += 1;
                }
                stats.slowest = stats.slowest.max(*elapsed);
                let api = !req.path.starts_with("/kiln/v1/");
                // A mutated method or path may name another operation: count only the
                // generated operation's own answers.
                let own = req.method == def.method
                    && req
                        .path
                        .starts_with(def.uri.split('{').next().unwrap_or(def.uri));
                if (200..300).contains(&resp.status) && own {
                    stats.succeeded.insert(def.name);
                }
                if req.label == "valid" && api && std::env::var_os("KILN_FUZZ_VERBOSE").is_some() {
                    println!("valid #{index} {}: {} {}", def.name, resp.status, resp.body);
                }
                if req.label == "valid" && api {
                    let outcome = resp
                        .header("x-amzn-errortype")
                        .map_or_else(|| resp.status.to_string(), str::to_string);
                    *stats
                        .valid_outcomes
                        .entry(def.name)
                        .or_default()
                        .entry(outcome)
                        .or_default() += 1;
                }
                match known_finding(&req, resp) {
                    Some(finding) => {
                        *stats.known.entry(finding).or_default() += 1;
                        Ok(())
                    }
                    None => check(&req, resp, *elapsed).map_err(|e| {
                        format!(
                            "{e}\n  answer: {} {:?} {}",
                            resp.status, resp.headers, resp.body
                        )
                    }),
                }
            }
            Err(e) => Err(e.clone()),
        };
        match verdict {
            Ok(()) => {
                if let Ok((resp, _)) = &outcome {
                    if (200..300).contains(&resp.status) {
                        drop(stats);
                        self.collect_arns(&resp.body);
                    }
                }
            }
            Err(e) => {
                stats.failure_count += 1;
                let kind = e.lines().next().unwrap_or_default();
                let kind = kind.split(" (").next().unwrap_or(kind).to_string();
                let target = match req.path.strip_prefix("/kiln/v1/") {
                    Some(rest) => format!(
                        "/kiln/v1/{}",
                        rest.split(['/', '?']).next().unwrap_or_default()
                    ),
                    None => def.name.to_string(),
                };
                *stats
                    .failure_kinds
                    .entry(format!("{target}: {kind}"))
                    .or_default() += 1;
                if stats.failures.len() < 25 {
                    let text = format!(
                        "request #{index} ({} {}, seed {:#x}): {e}\n  request: {}",
                        def.name,
                        req.label,
                        self.seed,
                        describe(&req).replace('\n', "\n    ")
                    );
                    stats.failures.push(text);
                }
            }
        }
    }

    /// After the run: a valid signed request and an SDK call are still served, and no image
    /// (hence no build) was ever created.
    fn assert_healthy(&self, server: &Server) {
        let list = self.signed("POST", "/ListComponents", json!({}));
        let (resp, _) = self
            .send(&list)
            .unwrap_or_else(|e| panic!("the server no longer answers after fuzzing: {e}"));
        assert_eq!(resp.status, 200, "ListComponents after fuzzing: {resp:?}");
        let images = self.signed("POST", "/ListImages", json!({}));
        let (resp, _) = self.send(&images).expect("ListImages after fuzzing");
        assert_eq!(resp.status, 200, "ListImages after fuzzing: {resp:?}");
        let listed: Value = serde_json::from_str(&resp.body).expect("ListImages answers JSON");
        assert_eq!(
            listed["imageVersionList"],
            json!([]),
            "the fuzzer must never create an image (it would build): {}",
            resp.body
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime
            .block_on(server.client().list_infrastructure_configurations().send())
            .expect("the SDK still gets answers after fuzzing");
    }
}

/// Whether an answer to a request is a known finding.
type Matcher = fn(&Request, &RawResponse) -> bool;

/// Server bugs this fuzzer found that are not fixed yet: answers matching one are counted and
/// printed rather than failing the run. Each has a reproducer test (`#[ignore]`d until the fix)
/// in `tests/fuzz_findings.rs`; remove the entry with the fix.
const KNOWN_FINDINGS: &[(&str, Matcher)] = &[];

fn known_finding(req: &Request, resp: &RawResponse) -> Option<&'static str> {
    KNOWN_FINDINGS
        .iter()
        .find(|(_, matches)| matches(req, resp))
        .map(|(name, _)| *name)
}

fn default_signer() -> Signer<'static> {
    default_signer_at(SystemTime::now())
}

fn default_signer_at(time: SystemTime) -> Signer<'static> {
    Signer {
        key: DEFAULT_KEY,
        secret: SECRET,
        region: REGION,
        time,
    }
}

const HELLO_COMPONENT: &str = "\
name: hello
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Hello
        action: ExecuteBash
        inputs:
          commands:
            - echo hello
";

/// The corpus of real component documents (tests/corpus/components), for CreateComponent.
fn corpus_documents() -> Vec<String> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/components");
    let mut docs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .collect();
    docs.sort();
    docs
}

#[test]
fn every_operation_answers_valid_and_mutated_requests_in_the_aws_error_shape() {
    let seed: u64 = std::env::var("KILN_FUZZ_SEED")
        .ok()
        .and_then(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            }
        })
        .unwrap_or(DEFAULT_SEED);
    let requests: usize = env_or("KILN_FUZZ_REQUESTS", DEFAULT_REQUESTS);
    let connections: usize = env_or("KILN_FUZZ_CONNECTIONS", DEFAULT_CONNECTIONS).max(1);
    println!(
        "fuzz_api: seed {seed:#x} (KILN_FUZZ_SEED), {requests} requests (KILN_FUZZ_REQUESTS), \
         {connections} connections (KILN_FUZZ_CONNECTIONS)"
    );

    // Without rate limits: at full speed the fuzzer would mostly meet 429s (throttling has its
    // own tests), and mutations would not reach the handlers.
    let server = Server::start_with_args("", &["--rate-limit", "0"]);
    let fuzzer = Fuzzer {
        addr: server.addr,
        seed,
        documents: corpus_documents(),
        pool: Mutex::new(Vec::new()),
        stats: Mutex::new(Stats::default()),
    };
    fuzzer.seed_resources();

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..connections {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests {
                    break;
                }
                fuzzer.run_one(index);
            });
        }
    });
    let elapsed = started.elapsed();
    fuzzer.assert_healthy(&server);

    let stats = fuzzer.stats.lock().unwrap_or_else(|p| p.into_inner());
    println!(
        "fuzz_api: {requests} requests in {elapsed:.1?} ({:.0}/s), slowest answer {:?}, \
         {:.1?} spent generating",
        requests as f64 / elapsed.as_secs_f64().max(0.001),
        stats.slowest,
        stats.generating
    );
    println!("statuses: {:?}", stats.statuses);
    println!("error types: {:?}", stats.error_types);
    println!("unmutated requests, by operation and answer:");
    for (operation, outcomes) in &stats.valid_outcomes {
        println!("  {operation}: {outcomes:?}");
    }
    if !stats.known.is_empty() {
        println!(
            "KNOWN FINDINGS (tolerated until fixed, see KNOWN_FINDINGS): {:?}",
            stats.known
        );
    }
    println!("mutations: {:?}", stats.mutations);
    println!(
        "operations with a 2xx answer: {} of {}: {:?}",
        stats.succeeded.len(),
        OPERATIONS.len(),
        stats.succeeded
    );
    println!(
        "resources created and reused: {}",
        fuzzer.pool.lock().map(|p| p.len()).unwrap_or_default()
    );
    assert!(
        stats.failures.is_empty(),
        "{} of {requests} requests broke the contract (seed {seed:#x}): {:#?}\nthe first {}:\n\n{}",
        stats.failure_count,
        stats.failure_kinds,
        stats.failures.len(),
        stats.failures.join("\n\n")
    );
}
