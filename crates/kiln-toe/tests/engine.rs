//! Execution semantics, end to end through `Engine::run` on the local host: real bash, real
//! files in a temporary directory, real log folders.

use kiln_toe::actions::Stream;
use kiln_toe::engine::{
    Engine, EngineConfig, EngineError, Observer, Outcome, RunRequest, SourceDocument, StepAt,
};
use kiln_toe::report::{ExecutionReport, Status, StepReport};
use kiln_toe::target::{LocalTarget, Reboot};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The document text with `$DIR` replaced by the fixture's directory.
    fn text(&self, yaml: &str) -> String {
        yaml.replace("$DIR", &self.path().display().to_string())
    }

    fn request(&self, yaml: &str) -> RunRequest {
        RunRequest {
            documents: vec![SourceDocument {
                name: "doc.yaml".into(),
                text: self.text(yaml),
                parameters: Vec::new(),
            }],
            phases: None,
            parameters: Vec::new(),
            execution_id: None,
            log_directory: self.path().join("logs"),
            state_directory: Some(self.path().join("state")),
        }
    }

    fn run(&self, request: RunRequest) -> ExecutionReport {
        self.run_on(&LocalTarget::host(), request)
    }

    fn run_on(&self, target: &LocalTarget, request: RunRequest) -> ExecutionReport {
        let config = EngineConfig::default();
        match Engine::new(target, &config, &kiln_toe::engine::Quiet).run(request) {
            Ok(Outcome::Finished(r)) => r,
            other => panic!("expected a finished run, got {other:?}"),
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(name)).unwrap_or_default()
    }
}

fn steps(report: &ExecutionReport) -> Vec<&StepReport> {
    report
        .documents
        .iter()
        .flat_map(|d| &d.phases)
        .flat_map(|p| &p.steps)
        .collect()
}

fn step<'r>(report: &'r ExecutionReport, name: &str) -> &'r StepReport {
    steps(report)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

fn output(report: &ExecutionReport, name: &str, key: &str) -> String {
    let outputs: serde_json::Value = serde_json::from_str(&step(report, name).outputs).unwrap();
    outputs[key].as_str().unwrap_or_default().to_string()
}

#[test]
fn phases_run_in_document_order_and_steps_in_order() {
    let f = Fixture::new();
    let mut request = f.request(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {name: B1, action: ExecuteBash, inputs: {commands: ['echo B1 >> $DIR/order']}}
      - {name: B2, action: ExecuteBash, inputs: {commands: ['echo B2 >> $DIR/order']}}
  - name: validate
    steps:
      - {name: V1, action: ExecuteBash, inputs: {commands: ['echo V1 >> $DIR/order']}}
  - name: test
    steps:
      - {name: T1, action: ExecuteBash, inputs: {commands: ['echo T1 >> $DIR/order']}}
"#,
    );
    request.phases = Some(vec!["test".into(), "build".into()]);
    let report = f.run(request);
    assert_eq!(report.status, Status::Success);
    assert_eq!(f.read("order"), "B1\nB2\nT1\n");
    let phases: Vec<&str> = report.documents[0]
        .phases
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(phases, ["build", "test"]);
}

#[test]
fn retries_up_to_max_attempts() {
    let f = Fixture::new();
    // Fails until the counter reaches 3.
    let doc = |attempts: u32| {
        format!(
            r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Flaky
        action: ExecuteBash
        maxAttempts: {attempts}
        inputs:
          commands:
            - 'n=$(cat $DIR/count{attempts} 2>/dev/null || echo 0); n=$((n+1)); echo $n > $DIR/count{attempts}; test $n -ge 3'
"#
        )
    };
    let ok = f.run(f.request(&doc(3)));
    assert_eq!(ok.status, Status::Success);
    assert_eq!(step(&ok, "Flaky").attempts, 3);
    let failed = f.run(f.request(&doc(2)));
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(step(&failed, "Flaky").attempts, 2);
    assert_eq!(f.read("count2").trim(), "2");
}

#[test]
fn timeout_applies_per_attempt() {
    let f = Fixture::new();
    let started = Instant::now();
    let report = f.run(f.request(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Slow
        action: ExecuteBash
        timeoutSeconds: 1
        maxAttempts: 2
        inputs: {commands: ['echo x >> $DIR/slow; sleep 30']}
"#,
    ));
    let elapsed = started.elapsed();
    let s = step(&report, "Slow");
    assert_eq!(s.status, Status::Failed);
    assert_eq!(s.attempts, 2);
    assert!(
        s.failure_message.as_deref().unwrap().contains("timed out"),
        "{s:?}"
    );
    assert_eq!(f.read("slow"), "x\nx\n");
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn on_failure_abort_continue_ignore() {
    let f = Fixture::new();
    let doc = |mode: &str| {
        format!(
            r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {{name: Bad, action: ExecuteBash, onFailure: {mode}, inputs: {{commands: ['exit 3']}}}}
      - {{name: After, action: ExecuteBash, inputs: {{commands: ['echo after-{mode} >> $DIR/after']}}}}
  - name: validate
    steps:
      - {{name: Later, action: ExecuteBash, inputs: {{commands: ['echo later-{mode} >> $DIR/after']}}}}
"#
        )
    };
    let abort = f.run(f.request(&doc("Abort")));
    assert_eq!(abort.status, Status::Failed);
    assert_eq!(step(&abort, "Bad").status, Status::Failed);
    assert_eq!(step(&abort, "After").status, Status::Pending);
    assert!(step(&abort, "Bad")
        .failure_message
        .as_deref()
        .unwrap()
        .contains("exit"));

    let cont = f.run(f.request(&doc("Continue")));
    assert_eq!(cont.status, Status::Failed);
    assert_eq!(step(&cont, "After").status, Status::Success);
    assert_eq!(step(&cont, "Later").status, Status::Pending);

    let ignore = f.run(f.request(&doc("Ignore")));
    assert_eq!(ignore.status, Status::SuccessWithIgnoredFailure);
    assert_eq!(step(&ignore, "Bad").status, Status::IgnoredFailure);
    assert_eq!(step(&ignore, "Later").status, Status::Success);
    assert_eq!(
        f.read("after"),
        "after-Continue\nafter-Ignore\nlater-Ignore\n"
    );
}

#[test]
fn parameters_constants_and_overrides() {
    let f = Fixture::new();
    let yaml = r#"
schemaVersion: 1.0
parameters:
  - Greeting: {type: string, default: hello}
  - Who: {type: string}
constants:
  - Punct: {type: string, value: '!'}
phases:
  - name: build
    steps:
      - {name: Say, action: ExecuteBash, inputs: {commands: ['echo "{{ Greeting }} {{Who}}{{ Punct }}"']}}
"#;
    let mut request = f.request(yaml);
    request.parameters = vec![
        ("Who".into(), "world".into()),
        ("Unknown".into(), "x".into()),
    ];
    let report = f.run(request);
    assert_eq!(output(&report, "Say", "stdout"), "hello world!");

    let config = EngineConfig::default();
    let target = LocalTarget::host();
    let engine = Engine::new(&target, &config, &kiln_toe::engine::Quiet);
    match engine.run(f.request(yaml)) {
        Err(EngineError::Parameter { message, .. }) => {
            assert!(
                message.contains("missing required parameter Who"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let mut request = f.request(yaml);
    request.parameters = vec![("Who".into(), "x".into()), ("Punct".into(), "?".into())];
    assert!(matches!(
        engine.run(request),
        Err(EngineError::Parameter { .. })
    ));
}

#[test]
fn chaining_outputs_and_inputs() {
    let f = Fixture::new();
    let report = f.run(f.request(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {name: Make, action: CreateFolder, inputs: [{path: $DIR/a}, {path: $DIR/b}]}
      - {name: Name, action: ExecuteBinary, inputs: {path: /bin/echo, arguments: [chained]}}
      - name: Use
        action: ExecuteBash
        inputs:
          commands:
            - 'echo "{{ build.Name.outputs.stdout }} {{ build.Make.inputs[1].path }} {{ build.Name.inputs.path }}"'
  - name: validate
    steps:
      - {name: Cross, action: ExecuteBash, inputs: {commands: ['echo "{{ build.Use.outputs.stdout }}"']}}
"#,
    ));
    assert_eq!(report.status, Status::Success, "{report:#?}");
    let dir = f.path().display();
    assert_eq!(
        output(&report, "Cross", "stdout"),
        format!("chained {dir}/b /bin/echo")
    );
    let log = PathBuf::from(&report.log_url);
    let chaining: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(log.join("chaining.json")).unwrap()).unwrap();
    let exprs: Vec<&str> = chaining
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["expression"].as_str().unwrap())
        .collect();
    assert!(exprs.contains(&"build.Name.outputs.stdout"), "{exprs:?}");
    assert!(exprs.contains(&"build.Make.inputs[1].path"), "{exprs:?}");
}

#[test]
fn loops() {
    let f = Fixture::new();
    let report = f.run(f.request(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Up
        action: ExecuteBash
        loop: {for: {start: 1, end: 5, updateBy: 2}}
        inputs: {commands: ['echo {{ loop.index }}:{{ loop.value }}']}
      - name: Down
        action: ExecuteBash
        loop: {name: down, for: {start: 3, end: 1, updateBy: -1}}
        inputs: {commands: ['echo {{ down.value }}']}
      - name: List
        action: ExecuteBash
        loop: {forEach: [a, b]}
        inputs: {commands: ['echo {{ loop.value }}']}
      - name: Split
        action: ExecuteBash
        loop: {name: lines, forEach: {list: '{{ build.List.outputs.stdout }}', delimiter: "\n"}}
        inputs: {commands: ['echo x{{ lines.value }}']}
      - name: Plain
        action: ExecuteBash
        inputs: {commands: ['echo "{{ loop.value }}"']}
"#,
    ));
    assert_eq!(report.status, Status::Success, "{report:#?}");
    assert_eq!(output(&report, "Up", "stdout"), "0:1\n1:3\n2:5");
    assert_eq!(output(&report, "Down", "stdout"), "3\n2\n1");
    assert_eq!(output(&report, "List", "stdout"), "a\nb");
    assert_eq!(output(&report, "Split", "stdout"), "xa\nxb");
    // A loop reference outside a loop stays verbatim.
    assert_eq!(output(&report, "Plain", "stdout"), "{{ loop.value }}");
}

#[test]
fn a_retry_reruns_every_iteration() {
    let f = Fixture::new();
    let report = f.run(f.request(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Iter
        action: ExecuteBash
        maxAttempts: 2
        loop: {forEach: [a, b, c]}
        inputs:
          commands:
            - 'echo {{ loop.value }} >> $DIR/runs'
            - 'if [ {{ loop.value }} = b ] && [ ! -e $DIR/once ]; then touch $DIR/once; exit 1; fi'
"#,
    ));
    assert_eq!(report.status, Status::Success);
    assert_eq!(f.read("runs"), "a\nb\na\nb\nc\n");
}

#[test]
fn loop_failure_names_the_iteration() {
    let f = Fixture::new();
    let report = f.run(f.request(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Iter
        action: ExecuteBash
        loop: {forEach: [a, b]}
        inputs: {commands: ['test {{ loop.value }} = a']}
"#,
    ));
    let message = step(&report, "Iter").failure_message.clone().unwrap();
    assert!(message.contains("iteration 1"), "{message}");
}

#[test]
fn conditionals_and_assert() {
    let f = Fixture::new();
    std::fs::write(f.path().join("present"), "x").unwrap();
    let report = f.run(f.request(
        r#"
schemaVersion: 1.0
parameters:
  - Mode: {type: string, default: fast}
phases:
  - name: build
    steps:
      - name: RunsWhenTrue
        action: ExecuteBash
        if: {and: [{fileExists: $DIR/present}, {not: {binaryExists: no-such-binary-kiln}}]}
        inputs: {commands: ['echo ran']}
      - name: SkippedWhenFalse
        action: ExecuteBash
        if: {stringEquals: slow, value: '{{ Mode }}'}
        inputs: {commands: ['exit 1']}
      - name: ElseExecute
        action: ExecuteBash
        if: {numberGreaterThan: 10, value: 3, else: Execute, then: Skip}
        inputs: {commands: ['echo else']}
      - name: Check
        action: Assert
        inputs: {or: [{folderExists: /nope}, {stringEquals: FAST, value: '{{ Mode }}'}]}
      - name: AbortHere
        action: ExecuteBash
        onFailure: Ignore
        if: {fileExists: $DIR/present, then: Abort}
        inputs: {commands: ['echo never']}
      - name: FalseAssert
        action: Assert
        onFailure: Continue
        inputs: {numberLessThan: 1, value: 2}
"#,
    ));
    assert_eq!(step(&report, "RunsWhenTrue").status, Status::Success);
    assert_eq!(step(&report, "SkippedWhenFalse").status, Status::Skipped);
    assert_eq!(output(&report, "ElseExecute", "stdout"), "else");
    assert_eq!(step(&report, "Check").status, Status::Success);
    assert_eq!(step(&report, "AbortHere").status, Status::IgnoredFailure);
    assert_eq!(step(&report, "FalseAssert").status, Status::Failed);
    assert_eq!(report.status, Status::Failed);
}

#[test]
fn exit_194_reruns_the_step_after_a_reboot() {
    let f = Fixture::new();
    let yaml = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: NeedsReboot
        action: ExecuteBash
        if: {fileExists: $DIR/gate}
        inputs:
          commands:
            - 'echo run >> $DIR/runs'
            - 'if [ ! -e $DIR/rebooted ]; then touch $DIR/rebooted; rm $DIR/gate; exit 194; fi'
      - {name: RebootAction, action: Reboot}
      - {name: After, action: ExecuteBash, inputs: {commands: ['echo after >> $DIR/runs']}}
"#;
    std::fs::write(f.path().join("gate"), "").unwrap();
    let report = f.run(f.request(yaml));
    assert_eq!(report.status, Status::Success, "{report:#?}");
    // Re-run after the reboot even though the `if` would now be false: it is not re-evaluated.
    assert_eq!(f.read("runs"), "run\nrun\nafter\n");
    assert_eq!(step(&report, "NeedsReboot").attempts, 1);
}

#[test]
fn a_target_that_goes_down_resumes_from_saved_state() {
    let f = Fixture::new();
    let yaml = r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {name: First, action: ExecuteBinary, inputs: {path: /bin/echo, arguments: [first]}}
      - name: NeedsReboot
        action: ExecuteBash
        inputs:
          commands:
            - 'echo run >> $DIR/runs'
            - 'if [ ! -e $DIR/rebooted ]; then touch $DIR/rebooted; exit 194; fi'
      - {name: RebootAction, action: Reboot}
      - {name: After, action: ExecuteBash, inputs: {commands: ['echo "after {{ build.First.outputs.stdout }}" >> $DIR/runs']}}
"#;
    let target = LocalTarget::host().with_reboot(Reboot::Exit);
    let config = EngineConfig::default();
    let engine = Engine::new(&target, &config, &kiln_toe::engine::Quiet);
    let request = f.request(yaml);
    let state = request.state_directory.clone().unwrap();
    let first = engine.run(request).unwrap();
    assert!(matches!(first, Outcome::RebootPending(_)), "{first:?}");
    assert!(state.join("executionstate.json").exists());
    // The "machine" comes back: NeedsReboot runs again, then RebootAction asks again.
    let second = engine.resume(&state).unwrap().unwrap();
    assert!(matches!(second, Outcome::RebootPending(_)), "{second:?}");
    let third = engine.resume(&state).unwrap().unwrap();
    let Outcome::Finished(report) = third else {
        panic!("{third:?}")
    };
    assert_eq!(report.status, Status::Success, "{report:#?}");
    assert_eq!(f.read("runs"), "run\nrun\nafter first\n");
    assert!(!state.join("executionstate.json").exists());
    assert!(engine.resume(&state).unwrap().is_none());
}

#[test]
fn endless_reboots_fail_the_step() {
    let f = Fixture::new();
    let report = f.run(f.request(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {name: Loop, action: ExecuteBash, inputs: {commands: ['exit 194']}}
"#,
    ));
    let s = step(&report, "Loop");
    assert_eq!(s.status, Status::Failed);
    assert!(
        s.failure_message.as_deref().unwrap().contains("reboot"),
        "{s:?}"
    );
}

#[test]
fn execute_document_nesting_cycles_and_depth() {
    let f = Fixture::new();
    let write = |name: &str, text: &str| std::fs::write(f.path().join(name), f.text(text)).unwrap();
    write(
        "inner.yaml",
        r#"
schemaVersion: 1.0
parameters:
  - Word: {type: string}
phases:
  - name: build
    steps:
      - {name: Say, action: ExecuteBash, inputs: {commands: ['echo "{{ Word }}" >> $DIR/nested']}}
  - name: test
    steps:
      - {name: NotRun, action: ExecuteBash, inputs: {commands: ['echo test >> $DIR/nested']}}
"#,
    );
    let report = f.run(f.request(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Nested
        action: ExecuteDocument
        inputs:
          document: $DIR/inner.yaml
          phases: build
          parameters: [{name: Word, value: hi}]
"#,
    ));
    assert_eq!(report.status, Status::Success, "{report:#?}");
    assert_eq!(f.read("nested"), "hi\n");
    assert_eq!(output(&report, "Nested", "status"), "success");
    let outputs: serde_json::Value =
        serde_json::from_str(&step(&report, "Nested").outputs).unwrap();
    assert_eq!(outputs["executedStepCount"], 1);
    assert!(step(&report, "Nested").detailed_output.is_some());

    write(
        "self.yaml",
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {name: Again, action: ExecuteDocument, inputs: {document: $DIR/self.yaml}}
"#,
    );
    let mut request = f.request("");
    request.documents[0].text = std::fs::read_to_string(f.path().join("self.yaml")).unwrap();
    request.documents[0].name = f.path().join("self.yaml").display().to_string();
    let cycle = f.run(request);
    assert_eq!(cycle.status, Status::Failed);
    let message = format!("{cycle:?}");
    assert!(message.contains("cycle"), "{message}");

    // d0 -> d1 -> d2 -> d3 is allowed (3 levels); d4 is one too many.
    for i in 0..5 {
        let body = if i < 4 {
            format!(
                "{{name: Next, action: ExecuteDocument, inputs: {{document: $DIR/d{}.yaml}}}}",
                i + 1
            )
        } else {
            "{name: Leaf, action: ExecuteBash, inputs: {commands: ['echo leaf']}}".to_string()
        };
        write(
            &format!("d{i}.yaml"),
            &format!("schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - {body}\n"),
        );
    }
    let mut deep = f.request("");
    deep.documents[0].text = std::fs::read_to_string(f.path().join("d0.yaml")).unwrap();
    deep.documents[0].name = f.path().join("d0.yaml").display().to_string();
    let deep = f.run(deep);
    assert_eq!(deep.status, Status::Failed);
    assert!(format!("{deep:?}").contains("nest at most 3 levels"));
    let mut ok = f.request("");
    ok.documents[0].text = std::fs::read_to_string(f.path().join("d1.yaml")).unwrap();
    ok.documents[0].name = f.path().join("d1.yaml").display().to_string();
    assert_eq!(f.run(ok).status, Status::Success);
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(Instant, String)>>,
}

impl Observer for Recorder {
    fn step_started(&self, at: &StepAt) {
        self.events
            .lock()
            .unwrap()
            .push((Instant::now(), format!("start {}", at.step)));
    }
    fn output(&self, at: &StepAt, _stream: Stream, line: &str) {
        self.events
            .lock()
            .unwrap()
            .push((Instant::now(), format!("{}: {line}", at.step)));
    }
    fn step_finished(&self, at: &StepAt, report: &StepReport, _elapsed: Duration) {
        self.events.lock().unwrap().push((
            Instant::now(),
            format!("end {} {}", at.step, report.status.name()),
        ));
    }
}

#[test]
fn logs_and_live_output() {
    let f = Fixture::new();
    let mut request = f.request(
        r#"
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - {name: Talk, action: ExecuteBash, inputs: {commands: ['echo early', 'sleep 1', 'echo late >&2']}}
      - {name: Secret, action: ExecuteBash, disableLogging: true, inputs: {commands: ['echo hush']}}
"#,
    );
    request.execution_id = Some("11111111-2222-3333-4444-555555555555".into());
    let recorder = Recorder::default();
    let config = EngineConfig::default();
    let target = LocalTarget::host();
    let Outcome::Finished(report) = Engine::new(&target, &config, &recorder)
        .run(request)
        .unwrap()
    else {
        panic!()
    };
    let events = recorder.events.lock().unwrap();
    let names: Vec<&str> = events.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "start Talk",
            "Talk: early",
            "Talk: late",
            "end Talk success",
            "start Secret",
            "end Secret success"
        ]
    );
    // "early" arrived about a second before the step ended: streamed, not collected at the end.
    assert!(events[3].0.duration_since(events[1].0) >= Duration::from_millis(800));

    let log = PathBuf::from(&report.log_url);
    let folder = log.file_name().unwrap().to_string_lossy().to_string();
    assert!(folder.starts_with("TOE_"), "{folder}");
    assert!(
        folder.ends_with("_UTC-0_11111111-2222-3333-4444-555555555555"),
        "{folder}"
    );
    let console = std::fs::read_to_string(log.join("console.log")).unwrap();
    assert!(
        console.contains("early") && console.contains("late"),
        "{console}"
    );
    assert!(!console.contains("hush"), "{console}");
    let detailed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(log.join("detailedoutput.json")).unwrap())
            .unwrap();
    assert_eq!(detailed["status"], "success");
    assert_eq!(
        detailed["documents"][0]["phases"][0]["steps"][0]["name"],
        "Talk"
    );
    assert_eq!(
        detailed["documents"][0]["phases"][0]["steps"][0]["timeoutSeconds"],
        7200
    );
    assert!(log.join("document.yaml").exists());
}

#[test]
fn a_cancelled_run_starts_no_further_step_or_attempt() {
    let f = Fixture::new();
    let request = f.request(
        r#"
name: cancel
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Slow
        action: ExecuteBash
        maxAttempts: 3
        onFailure: Continue
        inputs:
          commands: ["echo run >> $DIR/slow.txt; sleep 0.6; exit 1"]
      - name: Never
        action: ExecuteBash
        inputs:
          commands: ["touch $DIR/never"]
  - name: validate
    steps:
      - name: NeverEither
        action: ExecuteBash
        inputs:
          commands: ["touch $DIR/never-either"]
"#,
    );
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let config = EngineConfig {
        cancel: Some(cancel.clone()),
        working_directory: Some(f.path().join("work").display().to_string()),
        ..EngineConfig::default()
    };
    let flag = cancel.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let began = Instant::now();
    let report =
        match Engine::new(&LocalTarget::host(), &config, &kiln_toe::engine::Quiet).run(request) {
            Ok(Outcome::Finished(r)) => r,
            other => panic!("expected a finished run, got {other:?}"),
        };
    setter.join().unwrap();
    assert_eq!(report.status, Status::Failed);
    assert_eq!(
        f.read("slow.txt"),
        "run\n",
        "no second attempt after the cancel"
    );
    assert_eq!(step(&report, "Slow").status, Status::Failed);
    assert_eq!(
        step(&report, "Never").failure_message.as_deref(),
        Some(kiln_toe::engine::CANCELLED)
    );
    assert!(!f.path().join("never").exists());
    assert!(!f.path().join("never-either").exists());
    assert!(began.elapsed() < Duration::from_secs(2));
    // The scratch directory lived in the working directory and is gone.
    let work = f.path().join("work/kiln-toe");
    assert!(
        !work.exists() || std::fs::read_dir(&work).unwrap().next().is_none(),
        "scratch files left in {}",
        work.display()
    );
}
