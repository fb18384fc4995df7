//! A limit async-graphql lacks: the number of fields a request selects in all.
//!
//! Its complexity limit skips `__typename`, so `{ a1: __typename a2: __typename ... }`
//! with thousands of aliases passes it; each alias still costs work and bytes. This
//! counts every selected field, spreading fragments where they are used.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

use super::error_codes::with_code;

pub(super) struct FieldCountLimit(pub usize);

impl ExtensionFactory for FieldCountLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FieldCountLimit(self.0))
    }
}

#[async_trait::async_trait]
impl Extension for FieldCountLimit {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let count = count_fields(&document);
        if count > self.0 {
            let message = format!("Query selects too many fields ({count}; the limit is {}).", self.0);
            return Err(with_code(ServerError::new(message, None), "GRAPHQL_VALIDATION_FAILED"));
        }
        Ok(document)
    }
}

/// Fields selected by all operations, each fragment counted wherever it is spread.
pub fn count_fields(document: &ExecutableDocument) -> usize {
    let mut counter = Counter {
        document,
        memo: HashMap::new(),
        in_progress: HashSet::new(),
    };
    document
        .operations
        .iter()
        .map(|(_, op)| counter.selection_set(&op.node.selection_set.node))
        .sum()
}

struct Counter<'a> {
    document: &'a ExecutableDocument,
    memo: HashMap<&'a str, usize>,
    /// Fragments being counted: a cycle counts nothing here (validation rejects it).
    in_progress: HashSet<&'a str>,
}

impl<'a> Counter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field) => 1 + self.selection_set(&field.node.selection_set.node),
                Selection::InlineFragment(fragment) => self.selection_set(&fragment.node.selection_set.node),
                Selection::FragmentSpread(spread) => self.fragment(spread.node.fragment_name.node.as_str()),
            })
            .fold(0usize, usize::saturating_add)
    }

    fn fragment(&mut self, name: &'a str) -> usize {
        if let Some(count) = self.memo.get(name) {
            return *count;
        }
        let Some((key, fragment)) = self.document.fragments.get_key_value(name) else {
            return 0;
        };
        if !self.in_progress.insert(key.as_str()) {
            return 0;
        }
        let count = self.selection_set(&fragment.node.selection_set.node);
        self.in_progress.remove(key.as_str());
        self.memo.insert(key.as_str(), count);
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(query: &str) -> usize {
        count_fields(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn counts_aliases_nesting_and_spread_fragments() {
        assert_eq!(count("{ a: __typename b: __typename }"), 2);
        assert_eq!(count("{ me { id email } }"), 3);
        // A fragment of 2 fields spread 3 times costs 6.
        assert_eq!(
            count("{ x: me { ...F } y: me { ...F } z: me { ...F } } fragment F on User { id email }"),
            9
        );
        assert_eq!(count("{ ... on Query { __typename } }"), 1);
    }

    #[test]
    fn fragment_cycles_terminate() {
        assert_eq!(
            count("{ me { ...A } } fragment A on User { id ...B } fragment B on User { ...A }"),
            2
        );
    }
}
