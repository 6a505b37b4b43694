//! DescribeExportImageTasks: the disk images distribution exported to S3 from the caller's AMIs
//! (`Ami::exports`, a distribution's `s3ExportConfiguration`). Kiln records an export once it
//! is written, so every task it shows is `completed`.

use super::error::Ec2Error;
use super::filters::{self, Filter};
use super::form::Params;
use super::{Call, Operation};
use kiln_core::amis;
use kiln_domain::resources::ami::{Ami, S3ExportRecord};
use kiln_store::Txn;

/// The one filter EC2 documents for export image tasks.
const FILTERS: [&str; 1] = ["task-state"];

pub(crate) struct DescribeExportImageTasks {
    task_ids: Vec<String>,
    filters: Vec<Filter>,
    max_results: Option<usize>,
    next_token: Option<String>,
}

/// The prefix the export was written under: the object key less the `<task id>.<format>` EC2
/// appends to it.
fn s3_prefix(record: &S3ExportRecord) -> String {
    let name = format!(
        "{}.{}",
        record.task_id,
        record.disk_image_format.to_ascii_lowercase()
    );
    match record.s3_key.strip_suffix(&name) {
        Some(prefix) => prefix.to_string(),
        None => record
            .s3_key
            .rfind('/')
            .map_or(String::new(), |i| record.s3_key[..=i].to_string()),
    }
}

impl Operation for DescribeExportImageTasks {
    fn parse(params: &mut Params) -> Result<Self, Ec2Error> {
        let task_ids = params.list("ExportImageTaskId")?;
        let filters = filters::parse(params, "Filter")?;
        if let Some(f) = filters.iter().find(|f| !FILTERS.contains(&f.name.as_str())) {
            return Err(Ec2Error::invalid_value(format!(
                "The filter '{}' is invalid for DescribeExportImageTasks; use {}",
                f.name,
                FILTERS.join(", ")
            )));
        }
        let max_results = params.integer("MaxResults")?;
        if let Some(m) = max_results {
            if !(1..=500).contains(&m) {
                return Err(Ec2Error::invalid_value(format!(
                    "MaxResults: {m} is not a valid value; it must be between 1 and 500"
                )));
            }
        }
        Ok(DescribeExportImageTasks {
            task_ids,
            filters,
            max_results: max_results.map(|m| m as usize),
            next_token: params.string("NextToken"),
        })
    }

    fn run(&self, call: &Call, tx: &mut dyn Txn) -> Result<String, Ec2Error> {
        call.proceed()?;
        let after = call.page_start(self.next_token.as_deref())?;
        let owned = amis::owned(tx, call.account(), call.region())?;
        let mut tasks: Vec<(&Ami, &S3ExportRecord)> = owned
            .iter()
            .flat_map(|a| a.exports.iter().map(move |e| (a, e)))
            .collect();
        if !self.task_ids.is_empty() {
            if let Some(missing) = self
                .task_ids
                .iter()
                .find(|id| !tasks.iter().any(|(_, e)| &e.task_id == *id))
            {
                return Err(Ec2Error::new(
                    "InvalidExportImageTaskId.NotFound",
                    400,
                    format!("The export image task ID '{missing}' does not exist"),
                ));
            }
            tasks.retain(|(_, e)| self.task_ids.contains(&e.task_id));
        }
        tasks.retain(|_| filters::accept(&self.filters, |_| vec!["completed".to_string()]));
        tasks.sort_by(|a, b| a.1.task_id.cmp(&b.1.task_id));
        if let Some(after) = &after {
            tasks.retain(|(_, e)| e.task_id > *after);
        }
        let (page, next) = call.page(tasks, self.max_results, |(_, e)| e.task_id.clone());
        let mut x = call.response();
        x.list("exportImageTaskSet", &page, |x, (ami, e)| {
            x.text("exportImageTaskId", &e.task_id);
            x.text("imageId", &ami.image_id);
            x.element("s3ExportLocation", |x| {
                x.text("s3Bucket", &e.s3_bucket);
                x.text("s3Prefix", &s3_prefix(e));
            });
            x.text("status", "completed");
        });
        x.optional("nextToken", next.as_deref());
        Ok(x.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_the_key_less_the_task_file() {
        let mut r = S3ExportRecord {
            task_id: "export-ami-0123456789abcdef0".into(),
            disk_image_format: "RAW".into(),
            s3_bucket: "b".into(),
            s3_key: "exports/web/export-ami-0123456789abcdef0.raw".into(),
            role_name: "vmimport".into(),
            size: 1,
            completed: 0,
        };
        assert_eq!(s3_prefix(&r), "exports/web/");
        r.s3_key = "export-ami-0123456789abcdef0.raw".into();
        assert_eq!(s3_prefix(&r), "");
        r.s3_key = "elsewhere/disk.img".into();
        assert_eq!(s3_prefix(&r), "elsewhere/");
    }
}
