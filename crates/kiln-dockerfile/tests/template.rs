//! Image Builder's Dockerfile templates: the variables, where the placeholders land, and the
//! errors.

use kiln_dockerfile::template::{
    check_variables, expand_template, uses_components, uses_environments, uses_parent_image,
    uses_variable, PARENT_IMAGE,
};
use kiln_dockerfile::{Command, Dockerfile, Kind};

const PARENT: &str = "public.ecr.aws/docker/library/alpine:3.20";

/// (line, kind name) of every instruction, stage by stage, with the stages' FROM.
fn outline(d: &Dockerfile) -> Vec<String> {
    let mut out = Vec::new();
    for stage in &d.stages {
        out.push(format!("{} FROM {}", stage.line, stage.from));
        for i in &stage.instructions {
            let kind = match &i.kind {
                Kind::Environments => "Environments".to_string(),
                Kind::Components => "Components".to_string(),
                _ => i.source.clone(),
            };
            out.push(format!("{} {kind}", i.line));
        }
    }
    out
}

#[test]
fn the_documented_template() {
    let template = "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}\n";
    let d = expand_template(template, PARENT).unwrap();
    assert_eq!(
        outline(&d),
        [
            format!("1 FROM {PARENT}"),
            "2 Environments".to_string(),
            "3 Components".to_string()
        ]
    );
    let sources: Vec<&str> = d.stages[0]
        .instructions
        .iter()
        .map(|i| i.source.as_str())
        .collect();
    assert_eq!(
        sources,
        [
            "{{{ imagebuilder:environments }}}",
            "{{{ imagebuilder:components }}}"
        ]
    );
}

#[test]
fn spacing_inside_the_braces_and_around_the_line() {
    let template = "FROM {{{imagebuilder:parentImage}}} AS base\n  {{{   imagebuilder:environments\t}}}  \nRUN echo hi\n\t{{{imagebuilder:components}}}\nCMD [\"sh\"]\n";
    let d = expand_template(template, PARENT).unwrap();
    assert_eq!(
        outline(&d),
        [
            format!("1 FROM {PARENT}"),
            "2 Environments".to_string(),
            "3 RUN echo hi".to_string(),
            "4 Components".to_string(),
            "5 CMD [\"sh\"]".to_string(),
        ]
    );
    assert_eq!(d.stages[0].name.as_deref(), Some("base"));
}

#[test]
fn components_are_appended_to_the_last_stage_when_the_template_does_not_place_them() {
    let template = "FROM {{{ imagebuilder:parentImage }}} AS build\nRUN make\n\nFROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}\nCOPY --from=build /out /out\n# the end\n";
    assert!(!uses_components(template));
    let d = expand_template(template, PARENT).unwrap();
    assert_eq!(
        outline(&d),
        [
            format!("1 FROM {PARENT}"),
            "2 RUN make".to_string(),
            format!("4 FROM {PARENT}"),
            "5 Environments".to_string(),
            "6 COPY --from=build /out /out".to_string(),
            "7 Components".to_string(),
        ]
    );
}

#[test]
fn placeholders_stay_in_their_stage() {
    let template = "FROM {{{ imagebuilder:parentImage }}} AS tools\n{{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}\nFROM scratch\nCOPY --from=tools / /\n";
    let d = expand_template(template, PARENT).unwrap();
    assert_eq!(
        outline(&d),
        [
            format!("1 FROM {PARENT}"),
            "2 Environments".to_string(),
            "3 Components".to_string(),
            "4 FROM scratch".to_string(),
            "5 COPY --from=tools / /".to_string(),
        ]
    );
}

#[test]
fn parent_image_is_replaced_everywhere() {
    let template = "FROM {{{ imagebuilder:parentImage }}}\nLABEL parent=\"{{{ imagebuilder:parentImage }}}\"\nRUN <<EOF\necho built on {{{imagebuilder:parentImage}}}\nEOF\n";
    let d = expand_template(template, PARENT).unwrap();
    let instructions = &d.stages[0].instructions;
    assert_eq!(
        instructions[0].kind,
        Kind::Label(vec![("parent".to_string(), format!("\"{PARENT}\""))])
    );
    match &instructions[1].kind {
        Kind::Run {
            command, heredocs, ..
        } => {
            assert_eq!(command, &Command::Shell("<<EOF".to_string()));
            assert_eq!(heredocs[0].content, format!("echo built on {PARENT}\n"));
        }
        other => panic!("{other:?}"),
    }
    // The appended components step.
    assert_eq!(instructions[2].kind, Kind::Components);
    assert_eq!(instructions[2].line, 5);
}

#[test]
fn comments_and_other_braces_are_left_alone() {
    let template = "FROM {{{ imagebuilder:parentImage }}}\n# {{{ imagebuilder:components }}} would go here\nRUN echo '{{{ not.a.variable }}}' {{{ x\n";
    assert!(!uses_components(template));
    let d = expand_template(template, PARENT).unwrap();
    assert_eq!(
        outline(&d),
        [
            format!("1 FROM {PARENT}"),
            "3 RUN echo '{{{ not.a.variable }}}' {{{ x".to_string(),
            "3 Components".to_string(),
        ]
    );
}

#[test]
fn errors() {
    let cases = [
        (
            "FROM {{{ imagebuilder:parentImage }}}\nRUN echo {{{ imagebuilder:imageName }}}\n",
            "line 2: unknown template variable {{{ imagebuilder:imageName }}}: Dockerfile templates know {{{ imagebuilder:parentImage }}}, {{{ imagebuilder:environments }}} and {{{ imagebuilder:components }}}",
        ),
        (
            "FROM {{{ imagebuilder:parentimage }}}\n",
            "line 1: unknown template variable {{{ imagebuilder:parentimage }}}: Dockerfile templates know {{{ imagebuilder:parentImage }}}, {{{ imagebuilder:environments }}} and {{{ imagebuilder:components }}}",
        ),
        (
            "FROM {{{ imagebuilder:parentImage }}}\nRUN echo {{{ imagebuilder:components }}}\n",
            "line 2: {{{ imagebuilder:components }}} must be on a line of its own",
        ),
        (
            "{{{ imagebuilder:environments }}}\nFROM {{{ imagebuilder:parentImage }}}\n",
            "line 1: {{{ imagebuilder:environments }}} must come after the first FROM",
        ),
        (
            "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:components }}}\nRUN true\n{{{imagebuilder:components}}}\n",
            "line 4: {{{ imagebuilder:components }}} appears twice (lines 2 and 4): it may appear once",
        ),
        (
            "FROM {{{ imagebuilder:parentImage }}}\nRUN echo a \\\n{{{ imagebuilder:components }}}\n",
            "line 3: {{{ imagebuilder:components }}} is inside another instruction (a line continuation or a here-document): put it on a line of its own between instructions",
        ),
        (
            "FROM {{{ imagebuilder:parentImage }}}\nRUN <<EOF\n{{{ imagebuilder:environments }}}\nEOF\n",
            "line 3: {{{ imagebuilder:environments }}} is inside another instruction (a line continuation or a here-document): put it on a line of its own between instructions",
        ),
        (
            "RUN true\n",
            "line 1: RUN comes before the first FROM: only ARG may come before FROM",
        ),
    ];
    for (template, expected) in cases {
        let got = expand_template(template, PARENT)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(got, Err(expected.to_string()), "{template}");
    }
    assert_eq!(
        expand_template("FROM {{{ imagebuilder:parentImage }}}\n", "a\nRUN evil")
            .map_err(|e| e.to_string()),
        Err("line 1: the parent image contains a line break".to_string())
    );
}

#[test]
fn uses() {
    let template = "FROM {{{imagebuilder:parentImage}}}\n {{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}\n";
    assert!(uses_parent_image(template));
    assert!(uses_environments(template));
    assert!(uses_components(template));
    assert!(!uses_parent_image("FROM alpine\n"));
    assert!(!uses_environments(
        "FROM alpine\nRUN echo {{{ imagebuilder:environments }}}\n"
    ));
    assert!(!uses_variable(
        "{{ imagebuilder:parentImage }}",
        PARENT_IMAGE
    ));
    assert!(!uses_variable("{{{ imagebuilder:parentImage", PARENT_IMAGE));
    assert!(uses_variable(
        "{{{ x }}} {{{ imagebuilder:parentImage }}}",
        PARENT_IMAGE
    ));
}

#[test]
fn the_documented_variables_are_required() {
    let full = "FROM {{{ imagebuilder:parentImage }}}\n{{{ imagebuilder:environments }}}\n{{{ imagebuilder:components }}}";
    assert!(check_variables(full, true).is_ok());
    assert!(check_variables("FROM {{{imagebuilder:parentImage}}}", false).is_ok());
    let text = check_variables("FROM {{{ imagebuilder:parentImage }}}", true).unwrap_err();
    assert!(text.contains("imagebuilder:environments"), "{text}");
    let text = check_variables("FROM amazonlinux:2", false).unwrap_err();
    assert!(text.contains("{{{ imagebuilder:parentImage }}}"), "{text}");
}
