//! The search, its page and count, and the vocabulary's key ranges, each
//! run on both engines: SQLite in a temp dir and a database of this test
//! process's throwaway PostgreSQL cluster.

use launch_core::tags::TagFilter;

use super::super::super::tags::Search;
use super::*;

/// A store on each engine, with what keeps it alive. The PostgreSQL
/// database sorts text by ICU's English collation (`a` < `A` < `a-b` < `b`),
/// not in byte order, as a production database may.
async fn engines() -> Vec<(tempfile::TempDir, Store)> {
    super::super::test_engines::stores(
        "search",
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'",
    )
    .await
}

async fn tag(store: &Store, service: &str, environment: &str, tags: &[(&str, &str)]) {
    store.ensure_service(service, environment).await.unwrap();
    let tags: Vec<(String, String)> = tags
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let conflicts = store
        .set_service_tags(service, environment, &tags, &[])
        .await
        .unwrap();
    assert!(conflicts.is_empty());
}

/// The `service/environment`s `query` finds, a page of `limit` after
/// `offset`, and how many match in all.
async fn found(store: &Store, query: &str, offset: u32, limit: Option<u32>) -> (Vec<String>, u64) {
    let (rows, matched) = store
        .services_found(&[], Search::parse(query).terms(), offset, limit)
        .await
        .unwrap();
    let rows = rows
        .into_iter()
        .map(|row| format!("{}/{}", row.service, row.environment))
        .collect();
    (rows, matched)
}

#[tokio::test]
async fn search_terms_are_anded_and_matched_by_prefix() {
    for (_dir, store) in engines().await {
        let engine = store.engine.name();
        tag(&store, "web", "prod", &[("team", "Core")]).await;
        tag(&store, "db", "staging", &[("owner", "jane")]).await;
        let table = [
            ("", true),
            ("we", true),
            ("WE", true),
            ("env:pr", true),
            ("environment:pr", true),
            ("env:staging", false),
            ("service:w", true),
            ("service:x", false),
            ("team:", true),
            ("team:co", true),
            ("team:CO", true),
            ("team:core", true),
            ("team:cored", false),
            ("team:co env:prod", true),
            ("team:co env:dev", false),
            ("owner:", false),
            ("te", true),
            ("pro", true),
            ("x", false),
            ("team:co:x", false),
            (":co", false),
        ];
        for (query, want) in table {
            let (rows, _) = found(&store, query, 0, None).await;
            assert_eq!(
                rows.contains(&"web/prod".to_owned()),
                want,
                "{engine}: {query:?} found {rows:?}"
            );
        }
    }
}

#[tokio::test]
async fn like_wildcards_typed_in_a_search_are_plain_characters() {
    for (_dir, store) in engines().await {
        let engine = store.engine.name();
        tag(&store, "axb", "prod", &[("axb", "axb")]).await;
        tag(&store, "a_b", "prod", &[("a_b", "a_b")]).await;
        for query in ["a_b", "service:a_b", "a_b:", "a_b:a_b", "axb:ax"] {
            let (rows, _) = found(&store, query, 0, None).await;
            let want = if query.starts_with("axb") {
                "axb/prod"
            } else {
                "a_b/prod"
            };
            assert_eq!(rows, [want], "{engine}: {query:?}");
        }
        for query in [
            "a%",
            "%",
            "_",
            "service:%",
            "axb:%",
            "axb:_xb",
            "axb:a_",
            "a\\",
        ] {
            assert_eq!(
                found(&store, query, 0, None).await,
                (Vec::new(), 0),
                "{engine}: {query:?}"
            );
        }
        // PostgreSQL refuses a NUL in text: such a term matches nothing.
        assert_eq!(found(&store, "a\0", 0, None).await, (Vec::new(), 0));
        assert!(
            store
                .tag_vocabulary("a\0", 10, true)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_search_reads_a_page_and_counts_every_match() {
    for (_dir, store) in engines().await {
        let engine = store.engine.name();
        for i in 0..7 {
            let team = if i % 2 == 0 { "core" } else { "web" };
            tag(&store, &format!("svc-{i}"), "prod", &[("team", team)]).await;
        }
        store.retire_service("svc-0", "prod").await.unwrap();
        let names = |range: std::ops::Range<usize>| -> Vec<String> {
            range.map(|i| format!("svc-{i}/prod")).collect()
        };
        // svc-2, 4 and 6 are core.
        let core =
            |i: &[usize]| -> Vec<String> { i.iter().map(|i| format!("svc-{i}/prod")).collect() };
        let cases = [
            ("", 0, Some(4), (names(1..5), 6)),
            ("", 4, Some(4), (names(5..7), 6)),
            ("", 6, Some(4), (Vec::new(), 6)),
            ("", 9, None, (Vec::new(), 6)),
            ("", 2, None, (names(3..7), 6)),
            ("team:co", 0, Some(2), (core(&[2, 4]), 3)),
            ("team:co", 2, Some(2), (core(&[6]), 3)),
            ("team:co", 3, Some(2), (Vec::new(), 3)),
            ("team:co", 0, Some(3), (core(&[2, 4, 6]), 3)),
            ("team:co svc-4", 0, Some(3), (core(&[4]), 1)),
            ("nothing", 0, Some(3), (Vec::new(), 0)),
        ];
        for (query, offset, limit, want) in cases {
            assert_eq!(
                found(&store, query, offset, limit).await,
                want,
                "{engine}: {query:?} offset {offset} limit {limit:?}"
            );
        }
        // The tag filters of `launch services --tag` and the search, ANDed.
        let filters = [TagFilter::parse("team=web").unwrap()];
        let (rows, matched) = store
            .services_found(&filters, Search::parse("svc-").terms(), 1, Some(1))
            .await
            .unwrap();
        let rows: Vec<&str> = rows.iter().map(|row| row.service.as_str()).collect();
        assert_eq!((rows, matched), (vec!["svc-3"], 3), "{engine}");
    }
}

#[tokio::test]
async fn the_vocabulary_reads_a_key_prefix_in_byte_order_on_both_engines() {
    for (_dir, store) in engines().await {
        let engine = store.engine.name();
        tag(
            &store,
            "api",
            "prod",
            &[("a", "1"), ("a-b", "x"), ("a.c", "Y"), ("aB", "z")],
        )
        .await;
        tag(
            &store,
            "web",
            "prod",
            &[("a", "1"), ("A", "2"), ("b", "3"), ("a_", "4")],
        )
        .await;
        let vocabulary = |prefix: &'static str| {
            let store = &store;
            async move {
                store
                    .tag_vocabulary(prefix, 100, false)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(term, services)| format!("{term} ({services})"))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            vocabulary("a").await,
            [
                "a (2)",
                "a-b (1)",
                "a.c (1)",
                "aB (1)",
                "a_ (1)",
                "a-b:x (1)",
                "a.c:Y (1)",
                "a:1 (2)",
                "aB:z (1)",
                "a_:4 (1)"
            ],
            "{engine}"
        );
        assert_eq!(vocabulary("a-").await, ["a-b (1)", "a-b:x (1)"], "{engine}");
        assert_eq!(vocabulary("A").await, ["A (1)", "A:2 (1)"], "{engine}");
        assert_eq!(vocabulary("a.c:y").await, ["a.c:Y (1)"], "{engine}");
        assert_eq!(vocabulary("a_").await, ["a_ (1)", "a_:4 (1)"], "{engine}");
        assert_eq!(vocabulary("c").await, Vec::<String>::new(), "{engine}");
        assert_eq!(vocabulary("").await.len(), 14, "{engine}");
    }
}

#[test]
fn after_a_prefix_comes_the_next_code_point_of_its_last_character() {
    assert_eq!(after_prefix("te").as_deref(), Some("tf"));
    assert_eq!(after_prefix("a-").as_deref(), Some("a."));
    assert_eq!(after_prefix("z\u{7f}").as_deref(), Some("z\u{80}"));
    assert_eq!(after_prefix("\u{d7ff}").as_deref(), Some("\u{e000}"));
    assert_eq!(after_prefix("a\u{10ffff}").as_deref(), Some("b"));
    assert_eq!(after_prefix("\u{10ffff}"), None);
    assert_eq!(after_prefix(""), None);
    // Everything that starts with the prefix sorts in [prefix, after).
    for prefix in ["te", "a\u{7f}", "é"] {
        let after = after_prefix(prefix).unwrap();
        for suffix in ["", "\0", "zz", "\u{10ffff}\u{10ffff}"] {
            let key = format!("{prefix}{suffix}");
            assert!(prefix <= key.as_str() && key < after, "{key:?}");
        }
    }
}
