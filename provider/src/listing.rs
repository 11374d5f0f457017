//! What a refresh reads, for every kind of host the provider lists (EC2
//! instances, Docker containers). Terraform reads every `launch_service`
//! with its own ReadResource call, ten at a time; rather than one describe
//! (or `docker inspect`) per host, the first read in a provider process lists
//! every host this provider manages (those carrying its managed-by tag or
//! label) in one go, and the reads after it answer from that listing.
//! Correct before fast: a host the listing lacks (made since, or its tag
//! removed behind Terraform's back) is described directly before it counts as
//! gone; every change this process makes to a host (create, resize, retag,
//! remove) starts a new generation, so the next read lists again and an apply
//! never reads what it has just changed from before the change; a listing
//! older than [`MAX_AGE`] is taken again; and when the listing fails, reads
//! take the direct path, whose error names the call.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, info};

/// How long a listing answers reads: a plan's refresh lasts seconds, and
/// this bounds what a long-lived process (an apply) can see that is old.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// What a listing holds: a host, known by its ID.
pub trait Listed: Clone + Send + Sync {
    fn id(&self) -> &str;
}

/// Where hosts are read from: the cloud or engine, or a test double.
#[async_trait]
pub trait Source<V: Listed>: Send + Sync {
    type Error: Display + Send;

    /// Every host carrying the provider's managed-by tag, in any state.
    async fn list_managed(&self) -> Result<Vec<V>, Self::Error>;

    /// One host, read directly; `None` when it no longer exists.
    async fn describe(&self, id: &str) -> Result<Option<V>, Self::Error>;
}

/// The shared listing of one provider process.
pub struct ListingCache<V> {
    /// Bumped by every change to a host: a listing of an older generation
    /// answers no read.
    generation: AtomicU64,
    listing: Mutex<Option<Listing<V>>>,
}

impl<V> Default for ListingCache<V> {
    fn default() -> Self {
        ListingCache {
            generation: AtomicU64::new(0),
            listing: Mutex::new(None),
        }
    }
}

struct Listing<V> {
    generation: u64,
    taken: Instant,
    /// `None` when the listing call failed.
    hosts: Option<HashMap<String, V>>,
}

impl<V: Listed> ListingCache<V> {
    /// The host as this process last listed it, else as the source
    /// describes it now; `None` only when a direct read says it is gone.
    pub async fn read<S: Source<V> + ?Sized>(
        &self,
        source: &S,
        id: &str,
    ) -> Result<Option<V>, S::Error> {
        if let Some(view) = self.listed(source, id).await {
            return Ok(Some(view));
        }
        debug!(%id, "not in the listing: describing it directly");
        source.describe(id).await
    }

    /// Held while a host changes: when it drops, however the change ended
    /// (whether or not it succeeded), the listing is forgotten and the next
    /// read lists again.
    pub fn changing(&self) -> Changing<'_, V> {
        Changing(self)
    }

    /// The host from a current listing, taking one if there is none. Reads
    /// that arrive while a listing is taken wait for it and share it.
    async fn listed<S: Source<V> + ?Sized>(&self, source: &S, id: &str) -> Option<V> {
        let mut listing = self.listing.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        let current = listing
            .as_ref()
            .is_some_and(|l| l.generation == generation && l.taken.elapsed() < MAX_AGE);
        if !current {
            let taken = Instant::now();
            let hosts = match source.list_managed().await {
                Ok(views) => {
                    debug!(hosts = views.len(), "listed the managed hosts");
                    Some(views.into_iter().map(|v| (v.id().to_owned(), v)).collect())
                }
                Err(e) => {
                    info!(cause = %e, "cannot list the managed hosts: reading each directly");
                    None
                }
            };
            *listing = Some(Listing {
                generation,
                taken,
                hosts,
            });
        }
        listing
            .as_ref()
            .and_then(|l| l.hosts.as_ref())
            .and_then(|hosts| hosts.get(id).cloned())
    }
}

/// See [`ListingCache::changing`].
pub struct Changing<'a, V>(&'a ListingCache<V>);

impl<V> Drop for Changing<'_, V> {
    fn drop(&mut self) {
        self.0.generation.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A host as a listing holds it: its ID and one attribute that changes.
    #[derive(Clone, Debug, PartialEq)]
    struct View {
        id: String,
        state: String,
    }

    impl Listed for View {
        fn id(&self) -> &str {
            &self.id
        }
    }

    fn view(id: &str, state: &str) -> View {
        View {
            id: id.to_owned(),
            state: state.to_owned(),
        }
    }

    /// A cloud as a map, counting the calls made to it.
    #[derive(Default)]
    struct Fake {
        /// Every instance EC2 knows, tagged or not: `(view, managed)`.
        instances: StdMutex<Vec<(View, bool)>>,
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
    impl Source<View> for Fake {
        type Error = String;

        async fn list_managed(&self) -> Result<Vec<View>, String> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            let snapshot: Vec<View> = self
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
                return Err("DescribeInstances failed".to_owned());
            }
            Ok(snapshot)
        }

        async fn describe(&self, instance_id: &str) -> Result<Option<View>, String> {
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
        let cache = Arc::new(ListingCache::<View>::default());
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
        let cache = ListingCache::<View>::default();
        let untagged = cache.read(&fake, "i-untagged").await.unwrap();
        assert_eq!(untagged.map(|v| v.id), Some("i-untagged".to_owned()));
        assert_eq!(cache.read(&fake, "i-vanished").await.unwrap(), None);
        assert!(cache.read(&fake, "i-listed").await.unwrap().is_some());
        assert_eq!(fake.calls(), (1, 2), "(listings, direct reads)");
    }

    #[tokio::test]
    async fn a_change_in_this_process_makes_the_next_read_list_again() {
        let fake = Fake::with(&[("i-1", "running", true)]);
        let cache = ListingCache::<View>::default();
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
        drop(cache.changing());
        assert_eq!(
            cache.read(&fake, "i-1").await.unwrap().unwrap().state,
            "stopped"
        );
        assert_eq!(fake.calls(), (2, 0));
    }

    #[tokio::test]
    async fn a_listing_taken_while_an_instance_changed_answers_no_later_read() {
        let fake = Arc::new(Fake::with(&[("i-1", "running", true)]));
        let cache = Arc::new(ListingCache::<View>::default());
        let (hook_fake, hook_cache) = (Arc::downgrade(&fake), cache.clone());
        *fake.during_listing.lock().unwrap() = Some(Box::new(move || {
            // A concurrent terminate lands after the listing read the state.
            if let Some(fake) = hook_fake.upgrade() {
                fake.set_state("i-1", "terminated");
            }
            drop(hook_cache.changing());
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
        let cache = ListingCache::<View>::default();
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
        let cache = ListingCache::<View>::default();
        assert!(cache.read(&fake, "i-1").await.unwrap().is_some());
        assert!(cache.read(&fake, "i-1").await.unwrap().is_some());
        assert_eq!(
            fake.calls(),
            (1, 2),
            "one failed listing, then direct reads"
        );
    }
}
