//! The registry docs' reference sections are generated from the schemas, so
//! a description changed in code cannot leave the docs behind: `render`
//! writes the Argument and Attribute Reference of a block, and the tests
//! check the text between the `<!-- schema -->` markers of each doc page
//! against it. `LAUNCH_BLESS_DOCS=1 cargo test -p terraform-provider-launch
//! docs` rewrites those sections after a schema change.

use std::fmt::Write;

use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Block, NestedBlock};

pub const BEGIN: &str = "<!-- schema: generated from the provider's schema by `LAUNCH_BLESS_DOCS=1 cargo test -p terraform-provider-launch docs`; edit the descriptions in code -->";
pub const END: &str = "<!-- /schema -->";

fn type_name(t: &AttributeType) -> String {
    match t {
        AttributeType::String => "String".into(),
        AttributeType::Number => "Number".into(),
        AttributeType::Bool => "Boolean".into(),
        AttributeType::List(inner) => format!("List of {}", type_name(inner)),
        AttributeType::Set(inner) => format!("Set of {}", type_name(inner)),
        AttributeType::Map(inner) => format!("Map of {}", type_name(inner)),
        _ => "Object".into(),
    }
}

fn line(out: &mut String, name: &str, attribute: &Attribute) {
    let sensitive = if attribute.sensitive {
        ", Sensitive"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "- `{name}` ({}{sensitive}) {}",
        type_name(&attribute.attr_type),
        attribute.description.content
    );
}

fn sorted<T>(map: &std::collections::HashMap<String, T>) -> Vec<(&String, &T)> {
    let mut items: Vec<_> = map.iter().collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    items
}

fn block_of(nested: &NestedBlock) -> &Block {
    match nested {
        NestedBlock::Single(b)
        | NestedBlock::List(b)
        | NestedBlock::Set(b)
        | NestedBlock::Map(b)
        | NestedBlock::Group(b)
        | NestedBlock::Optional(b) => b,
    }
}

/// The reference of a block: required, then optional arguments and blocks,
/// each block's own arguments, then (for a resource) what is computed.
pub fn render(block: &Block, computed_heading: Option<&str>) -> String {
    let mut out = String::new();
    let pick = |wanted: &[AttributeConstraint]| -> Vec<(&String, &Attribute)> {
        sorted(&block.attributes)
            .into_iter()
            .filter(|(_, a)| wanted.contains(&a.constraint))
            .collect()
    };
    let required = pick(&[AttributeConstraint::Required]);
    if !required.is_empty() {
        out.push_str("### Required\n\n");
        for (name, attribute) in required {
            line(&mut out, name, attribute);
        }
        out.push('\n');
    }
    out.push_str("### Optional\n\n");
    for (name, attribute) in pick(&[
        AttributeConstraint::Optional,
        AttributeConstraint::OptionalComputed,
    ]) {
        line(&mut out, name, attribute);
    }
    let blocks = sorted(&block.blocks);
    for (name, nested) in &blocks {
        let _ = writeln!(
            out,
            "- `{name}` (Block List, Max: 1) {} See `{name}` below.",
            block_of(nested).description.content
        );
    }
    for (name, nested) in &blocks {
        let _ = writeln!(out, "\n### Nested Schema for `{name}`\n");
        for (attr, attribute) in sorted(&block_of(nested).attributes) {
            line(&mut out, attr, attribute);
        }
    }
    if let Some(heading) = computed_heading {
        let _ = writeln!(out, "\n{heading}\n");
        for (name, attribute) in pick(&[AttributeConstraint::Computed]) {
            line(&mut out, name, attribute);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tf_provider::Provider;

    use super::*;

    /// The page with its generated part replaced by `generated`.
    fn regenerated(page: &str, text: &str, generated: &str) -> String {
        let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
            panic!("{page} lacks the {BEGIN} … {END} markers");
        };
        format!("{}{BEGIN}\n\n{generated}\n{}", &text[..start], &text[end..])
    }

    /// Checks (or with `LAUNCH_BLESS_DOCS=1` rewrites) the generated part of
    /// a doc page.
    fn check(page: &str, generated: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(page);
        let text = std::fs::read_to_string(&path).expect("read the doc page");
        let wanted = regenerated(page, &text, generated);
        if std::env::var_os("LAUNCH_BLESS_DOCS").is_some() {
            std::fs::write(&path, wanted).expect("write the doc page");
            return;
        }
        assert!(
            text == wanted,
            "{page} does not match the schema: run LAUNCH_BLESS_DOCS=1 cargo test -p terraform-provider-launch docs, and review the diff"
        );
    }

    #[test]
    fn docs_of_launch_service_match_its_schema() {
        let schema = crate::service::schema();
        let generated = render(&schema.block, Some("## Attribute Reference"));
        assert!(
            generated.contains("- `name` (String) Service name"),
            "{generated}"
        );
        assert!(
            generated.contains("### Nested Schema for `docker`"),
            "{generated}"
        );
        check("docs/resources/launch_service.md", &generated);
    }

    #[test]
    fn docs_of_the_provider_block_match_its_schema() {
        let provider = crate::provider::LaunchProvider::default();
        let mut diags = tf_provider::Diagnostics::default();
        let schema = provider.schema(&mut diags).expect("a schema");
        check("docs/index.md", &render(&schema.block, None));
    }

    #[test]
    fn a_page_that_drifted_from_the_schema_is_caught() {
        let schema = crate::service::schema();
        let generated = render(&schema.block, Some("## Attribute Reference"));
        let page = format!("# Title\n\n{BEGIN}\n\n{generated}\n{END}\n\n## More\n");
        assert_eq!(regenerated("page", &page, &generated), page);
        let drifted = page.replace("Service name", "Name of the service");
        assert_ne!(regenerated("page", &drifted, &generated), drifted);
    }
}
