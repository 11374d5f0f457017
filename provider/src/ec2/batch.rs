//! Direct reads of instances, folded: the reads a refresh cannot answer from
//! the shared listing (`crate::listing`) arrive ten at a time, each from its own
//! ReadResource call; the batcher turns those arriving within a few
//! milliseconds into one DescribeInstances filtered by their IDs.

use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;
use tokio::sync::{mpsc, oneshot};

use super::{Ec2Error, InstanceView};

/// One read waiting for its instance, and where its answer goes.
pub type PendingRead = (
    String,
    oneshot::Sender<Result<Option<InstanceView>, String>>,
);

/// How long the batcher waits for more reads after the first one.
const BATCH_WINDOW: Duration = Duration::from_millis(3);
/// DescribeInstances takes at most 200 values per filter.
const BATCH_MAX: usize = 200;

/// Runs until every sender is gone.
pub async fn batch_reads(client: Client, mut reads: mpsc::UnboundedReceiver<PendingRead>) {
    while let Some(first) = reads.recv().await {
        let mut batch = vec![first];
        let window = tokio::time::sleep(BATCH_WINDOW);
        tokio::pin!(window);
        while batch.len() < BATCH_MAX {
            tokio::select! {
                next = reads.recv() => match next {
                    Some(read) => batch.push(read),
                    None => break,
                },
                _ = &mut window => break,
            }
        }
        let mut ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        // A filter, not InstanceIds: one unknown id must not fail the others.
        let filter = Filter::builder()
            .name("instance-id")
            .set_values(Some(ids))
            .build();
        let reply = client.describe_instances().filters(filter).send().await;
        match reply {
            Ok(reply) => {
                let views: Vec<InstanceView> = reply
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .map(InstanceView::from_sdk)
                    .collect();
                for (id, waiter) in batch {
                    let _ = waiter.send(Ok(views.iter().find(|v| v.id == id).cloned()));
                }
            }
            Err(e) => {
                let message = Ec2Error::call("DescribeInstances", e).to_string();
                for (_, waiter) in batch {
                    let _ = waiter.send(Err(message.clone()));
                }
            }
        }
    }
}
