//! The instances a refresh reads. Terraform reads every `launch_service`
//! with its own ReadResource call, ten at a time; rather than one
//! DescribeInstances per instance, the first read in a provider process lists
//! every instance this provider manages (those carrying its managed-by tag) in
//! one paginated call, and the reads after it answer from that listing.
//! Correct before fast: an instance the listing lacks (launched since, or its
//! tag removed behind Terraform's back) is described directly before it counts
//! as gone; every change this process makes to an instance (launch, resize,
//! retag, terminate) starts a new generation, so the next read lists again and
//! an apply never reads what it has just changed from before the change; a
//! listing older than [`MAX_AGE`] is taken again; and when the listing fails,
//! reads take the direct path, whose error names the call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, info};

use super::{Ec2Error, InstanceView};

/// How long a listing answers reads: a plan's refresh lasts seconds, and
/// this bounds what a long-lived process (an apply) can see that is old.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// Where instances are read from: EC2 through the SDK, or a test double.
#[async_trait]
pub trait Source: Send + Sync {
    /// Every instance carrying the provider's managed-by tag, in any state.
    async fn list_managed(&self) -> Result<Vec<InstanceView>, Ec2Error>;

    /// One instance, read directly; `None` when EC2 no longer knows it.
    async fn describe(&self, instance_id: &str) -> Result<Option<InstanceView>, Ec2Error>;
}

/// The shared listing of one provider process.
#[derive(Default)]
pub struct InstanceCache {
    /// Bumped by every change to an instance: a listing of an older
    /// generation answers no read.
    generation: AtomicU64,
    listing: Mutex<Option<Listing>>,
}

struct Listing {
    generation: u64,
    taken: Instant,
    /// `None` when the listing call failed.
    instances: Option<HashMap<String, InstanceView>>,
}

impl InstanceCache {
    /// The instance as this process last listed it, else as EC2 describes it
    /// now; `None` only when a direct read says EC2 no longer knows it.
    pub async fn read(
        &self,
        source: &dyn Source,
        instance_id: &str,
    ) -> Result<Option<InstanceView>, Ec2Error> {
        if let Some(view) = self.listed(source, instance_id).await {
            return Ok(Some(view));
        }
        debug!(%instance_id, "not in the listing: describing it directly");
        source.describe(instance_id).await
    }

    /// Forgets the listing: called after every change to an instance,
    /// whether or not the change succeeded.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The instance from a current listing, taking one if there is none.
    /// Reads that arrive while a listing is taken wait for it and share it.
    async fn listed(&self, source: &dyn Source, instance_id: &str) -> Option<InstanceView> {
        let mut listing = self.listing.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        let current = listing
            .as_ref()
            .is_some_and(|l| l.generation == generation && l.taken.elapsed() < MAX_AGE);
        if !current {
            let taken = Instant::now();
            let instances = match source.list_managed().await {
                Ok(views) => {
                    debug!(instances = views.len(), "listed the managed instances");
                    Some(views.into_iter().map(|v| (v.id.clone(), v)).collect())
                }
                Err(e) => {
                    info!(cause = %e, "cannot list the managed instances: reading each directly");
                    None
                }
            };
            *listing = Some(Listing {
                generation,
                taken,
                instances,
            });
        }
        listing
            .as_ref()
            .and_then(|l| l.instances.as_ref())
            .and_then(|instances| instances.get(instance_id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn view(id: &str, state: &str) -> InstanceView {
        InstanceView {
            id: id.to_owned(),
            state: state.to_owned(),
            instance_type: "t3.small".to_owned(),
            image_id: "ami-1".to_owned(),
            subnet_id: None,
            key_name: None,
            security_group_ids: Vec::new(),
            private_ip: None,
            public_ip: None,
            tags: BTreeMap::new(),
            lifecycle: None,
        }
    }

    /// EC2 as a map, counting the calls made to it.
    #[derive(Default)]
    struct Fake {
        /// Every instance EC2 knows, tagged or not: `(view, managed)`.
        instances: StdMutex<Vec<(InstanceView, bool)>>,
        fail_listing: StdMutex<bool>,
        lists: AtomicUsize,
        describes: AtomicUsize,
        /// Called in the middle of a listing, e.g. to change something then.
        during_listing: StdMutex<Option<Box<dyn Fn() + Send>>>,
    }

    impl Fake {
        fn with(instances: &[(&str, &str, bool)]) -> Fake {
            let fake = Fake::default();
            *fake.instances.lock().unwrap() = instances
                .iter()
                .map(|(id, state, managed)| (view(id, state), *managed))
                .collect();
            fake
        }

        fn set_state(&self, id: &str, state: &str) {
            for (v, _) in self.instances.lock().unwrap().iter_mut() {
                if v.id == id {
                    v.state = state.to_owned();
                }
            }
        }

        fn calls(&self) -> (usize, usize) {
            (
                self.lists.load(Ordering::SeqCst),
                self.describes.load(Ordering::SeqCst),
            )
        }
    }

    #[async_trait]
    impl Source for Fake {
        async fn list_managed(&self) -> Result<Vec<InstanceView>, Ec2Error> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            let snapshot: Vec<InstanceView> = self
                .instances
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, managed)| *managed)
                .map(|(v, _)| v.clone())
                .collect();
            if let Some(hook) = self.during_listing.lock().unwrap().as_ref() {
                hook();
            }
            if *self.fail_listing.lock().unwrap() {
                return Err(Ec2Error::Batched("EC2 DescribeInstances failed".into()));
            }
            Ok(snapshot)
        }

        async fn describe(&self, instance_id: &str) -> Result<Option<InstanceView>, Ec2Error> {
            self.describes.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .instances
                .lock()
                .unwrap()
                .iter()
                .find(|(v, _)| v.id == instance_id)
                .map(|(v, _)| v.clone()))
        }
    }

    #[tokio::test]
    async fn concurrent_reads_of_many_instances_share_one_listing() {
        let ids: Vec<String> = (0..50).map(|n| format!("i-{n}")).collect();
        let fake = Arc::new(Fake::default());
        *fake.instances.lock().unwrap() =
            ids.iter().map(|id| (view(id, "running"), true)).collect();
        let cache = Arc::new(InstanceCache::default());
        let reads: Vec<_> = ids
            .iter()
            .map(|id| {
                let (fake, cache, id) = (fake.clone(), cache.clone(), id.clone());
                tokio::spawn(async move { cache.read(fake.as_ref(), &id).await })
            })
            .collect();
        for (read, id) in reads.into_iter().zip(&ids) {
            let found = read.await.unwrap().unwrap().expect("listed");
            assert_eq!(&found.id, id);
        }
        assert_eq!(fake.calls(), (1, 0), "(listings, direct reads)");
    }

    #[tokio::test]
    async fn an_instance_missing_from_the_listing_is_described_before_it_counts_as_gone() {
        // i-untagged lost its managed-by tag; i-vanished is unknown to EC2.
        let fake = Fake::with(&[
            ("i-listed", "running", true),
            ("i-untagged", "running", false),
        ]);
        let cache = InstanceCache::default();
        let untagged = cache.read(&fake, "i-untagged").await.unwrap();
        assert_eq!(untagged.map(|v| v.id), Some("i-untagged".to_owned()));
        assert_eq!(cache.read(&fake, "i-vanished").await.unwrap(), None);
        assert!(cache.read(&fake, "i-listed").await.unwrap().is_some());
        assert_eq!(fake.calls(), (1, 2), "(listings, direct reads)");
    }

    #[tokio::test]
    async fn a_change_in_this_process_makes_the_next_read_list_again() {
        let fake = Fake::with(&[("i-1", "running", true)]);
        let cache = InstanceCache::default();
        assert_eq!(
            cache.read(&fake, "i-1").await.unwrap().unwrap().state,
            "running"
        );
        // Positive control: without a change the listing answers, stale.
        fake.set_state("i-1", "stopped");
        assert_eq!(
            cache.read(&fake, "i-1").await.unwrap().unwrap().state,
            "running"
        );
        assert_eq!(fake.calls(), (1, 0));
        cache.invalidate();
        assert_eq!(
            cache.read(&fake, "i-1").await.unwrap().unwrap().state,
            "stopped"
        );
        assert_eq!(fake.calls(), (2, 0));
    }

    #[tokio::test]
    async fn a_listing_taken_while_an_instance_changed_answers_no_later_read() {
        let fake = Arc::new(Fake::with(&[("i-1", "running", true)]));
        let cache = Arc::new(InstanceCache::default());
        let (hook_fake, hook_cache) = (Arc::downgrade(&fake), cache.clone());
        *fake.during_listing.lock().unwrap() = Some(Box::new(move || {
            // A concurrent terminate lands after the listing read the state.
            if let Some(fake) = hook_fake.upgrade() {
                fake.set_state("i-1", "terminated");
            }
            hook_cache.invalidate();
        }));
        let first = cache.read(fake.as_ref(), "i-1").await.unwrap().unwrap();
        assert_eq!(
            first.state, "running",
            "the read concurrent with the change"
        );
        *fake.during_listing.lock().unwrap() = None;
        let next = cache.read(fake.as_ref(), "i-1").await.unwrap().unwrap();
        assert_eq!(next.state, "terminated");
        assert_eq!(fake.calls(), (2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_listing_is_taken_again() {
        let fake = Fake::with(&[("i-1", "running", true)]);
        let cache = InstanceCache::default();
        cache.read(&fake, "i-1").await.unwrap();
        tokio::time::advance(MAX_AGE - Duration::from_secs(1)).await;
        cache.read(&fake, "i-1").await.unwrap();
        assert_eq!(fake.calls(), (1, 0), "still current");
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.read(&fake, "i-1").await.unwrap();
        assert_eq!(fake.calls(), (2, 0), "too old: listed again");
    }

    #[tokio::test]
    async fn a_failed_listing_sends_reads_to_the_direct_path() {
        let fake = Fake::with(&[("i-1", "running", true)]);
        *fake.fail_listing.lock().unwrap() = true;
        let cache = InstanceCache::default();
        assert!(cache.read(&fake, "i-1").await.unwrap().is_some());
        assert!(cache.read(&fake, "i-1").await.unwrap().is_some());
        assert_eq!(
            fake.calls(),
            (1, 2),
            "one failed listing, then direct reads"
        );
    }
}
