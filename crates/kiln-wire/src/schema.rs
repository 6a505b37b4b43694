//! The vocabulary of the generated constraint table (`generated/schema.rs`).

use crate::generated::operations::Operation;
use crate::generated::schema::SHAPES;

/// Index of a shape in [`SHAPES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShapeId(pub usize);

impl ShapeId {
    pub fn shape(self) -> &'static Shape {
        &SHAPES[self.0]
    }
}

#[derive(Debug)]
pub struct Shape {
    pub name: &'static str,
    pub kind: ShapeKind,
}

#[derive(Debug)]
pub enum ShapeKind {
    Structure {
        members: &'static [Member],
        required: &'static [&'static str],
        /// `Some(status)` for error shapes.
        error_status: Option<u16>,
    },
    List {
        member: ShapeId,
        min: Option<i64>,
        max: Option<i64>,
    },
    Map {
        key: ShapeId,
        value: ShapeId,
        min: Option<i64>,
        max: Option<i64>,
    },
    String {
        min: Option<i64>,
        max: Option<i64>,
        pattern: Option<&'static str>,
        enum_values: &'static [&'static str],
    },
    /// Decodes into `i32`.
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    /// Decodes into `i64`.
    Long {
        min: Option<i64>,
        max: Option<i64>,
    },
    Double,
    Boolean,
    Timestamp,
}

/// Where a request member travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Body,
    Query(&'static str),
    Uri(&'static str),
}

#[derive(Debug)]
pub struct Member {
    pub name: &'static str,
    pub shape: ShapeId,
    pub location: Location,
    pub idempotency_token: bool,
    /// Responses always carry this member, empty when there is nothing in it (see
    /// `xtask::codegen::always_present` for the rule).
    pub always_present: bool,
}

#[derive(Debug)]
pub struct OperationDef {
    pub operation: Operation,
    pub name: &'static str,
    pub method: &'static str,
    pub uri: &'static str,
    pub input: ShapeId,
    pub output: ShapeId,
    /// The input has a `clientToken` idempotency member.
    pub idempotent: bool,
    /// The output has a `requestId` member, which the server fills in.
    pub has_request_id: bool,
    pub errors: &'static [&'static str],
}

impl OperationDef {
    /// Reads never change state: they run in a read-only transaction.
    pub fn is_read_only(&self) -> bool {
        self.method == "GET"
            || self.name.starts_with("List")
            || self.name == "GetMarketplaceResource"
    }
}
