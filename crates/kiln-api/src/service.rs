//! One API call, from validated input to JSON answer, inside one transaction.

use crate::convert::{store_error, StoreResultExt};
use crate::paging::{Pager, SIGNING_KEY_SETTING};
use kiln_store::{SqliteStore, StoreError, TokenKey, TokenRecord, Txn};
use kiln_wire::codec::with_request_id;
use kiln_wire::{dispatch, ApiError, ErrorKind, Operation, RequestContext};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

/// How long idempotency tokens are kept. AWS promises nothing; EC2 keeps them at least a day.
pub const TOKEN_RETENTION_MILLIS: i64 = 7 * 24 * 3600 * 1000;

pub struct Service {
    pub store: SqliteStore,
    pub pager: Pager,
}

impl Service {
    /// Opens the database under `data_dir` and loads (or creates) the pagination key.
    pub fn open(data_dir: &Path, sync: kiln_store::sqlite::Sync) -> Result<Service, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let store = SqliteStore::open(&data_dir.join("kiln.db"), sync)?;
        let key = store.write(|tx| -> Result<String, StoreError> {
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
        Ok(Service { store, pager })
    }

    /// Validates `input`, runs the operation in its transaction and returns the response JSON
    /// (with `requestId` filled in where the response has one).
    pub fn call(
        &self,
        op: Operation,
        ctx: &RequestContext,
        input: Value,
    ) -> Result<String, ApiError> {
        let def = op.def();
        kiln_wire::validate::validate(def.input, &input)?;
        let output = if def.is_read_only() {
            self.store
                .read(|tx| dispatch(self, op, ctx, tx, input))
                .map_err(store_error)??
        } else if def.idempotent {
            self.store
                .write(|tx| self.idempotent(op, ctx, tx, input))
                .map_err(store_error)??
        } else {
            self.store
                .write(|tx| dispatch(self, op, ctx, tx, input))
                .map_err(store_error)??
        };
        Ok(if def.has_request_id {
            with_request_id(output, &ctx.request_id)
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
        input: Value,
    ) -> Result<String, ApiError> {
        let Some(token) = input
            .get("clientToken")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return dispatch(self, op, ctx, tx, input);
        };
        let key = TokenKey {
            account: ctx.account_id.clone(),
            region: ctx.region.clone(),
            operation: op.def().name.to_string(),
            token,
        };
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
        let output = dispatch(self, op, ctx, tx, input)?;
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

/// A digest of the request's parameters. `serde_json` keeps object keys sorted, so the text is
/// canonical whatever order the client sent them in.
fn params_hash(input: &Value) -> String {
    let digest = Sha256::digest(input.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
