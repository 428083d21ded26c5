//! Calling a sharded owner: each request goes to the shard its id names (the first
//! hex digit of the id, see [`crate::ids::Shard`]), under a [`Resilience`] of that
//! shard's own, so that one dead shard opens its own breaker and spends its own retry
//! budget, not its siblings'. An unsharded owner is the one-shard case.

use std::{collections::BTreeMap, future::Future};

use tonic::{Request, Status};

use crate::{
    config::Policy,
    deadline::{Deadline, Hop},
    ids::Shard,
    resilience::Resilience,
};

/// The shards of one dependency, in shard order, each a `C` (a client, or for bus-rpc
/// the shard's number) with its own [`Resilience`].
pub struct Sharded<C> {
    service: &'static str,
    members: Vec<(C, Resilience)>,
}

impl<C> Sharded<C> {
    /// `members[i]` is shard `i` (at least one).
    pub fn new(service: &'static str, members: Vec<C>, policy: Policy) -> Self {
        assert!(!members.is_empty(), "{service} needs a shard");
        Self { service, members: members.into_iter().map(|c| (c, Resilience::new(policy))).collect() }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The shard that holds `id`, or `NOT_FOUND` for an id that names a shard this
    /// dependency does not have (nobody can hold it). A malformed id goes to shard 1,
    /// whose own validation says what is wrong with it.
    pub fn of(&self, id: &str) -> Result<(usize, &C, &Resilience), Status> {
        let index = Shard::of_id(id).unwrap_or(0);
        let (member, resilience) = self.members.get(index).ok_or_else(|| {
            Status::not_found(format!(
                "{id} names shard {} of {}, which runs as {} shard(s): no such {}",
                index + 1,
                self.service,
                self.members.len(),
                self.service.trim_end_matches('s')
            ))
        })?;
        Ok((index, member, resilience))
    }

    /// Makes the call of `hop` for the entity `id` on its shard, as
    /// [`Resilience::call`] makes it (`make_call` sends one attempt to `member`).
    pub async fn call<Req, Resp, Fut>(
        &self,
        id: &str,
        hop: Hop,
        deadline: Deadline,
        message: Req,
        make_call: impl Fn(&C, Request<Req>) -> Fut,
    ) -> Result<Resp, Status>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let (_, member, resilience) = self.of(id)?;
        resilience.call(hop, deadline, message, |req| make_call(member, req)).await
    }
}

/// `ids` grouped by the shard that holds each (shard index → ids, in the order given).
pub fn by_shard(ids: &[String]) -> BTreeMap<usize, Vec<String>> {
    let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for id in ids {
        groups.entry(Shard::of_id(id).unwrap_or(0)).or_default().push(id.clone());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_go_to_the_shard_they_name_and_a_missing_shard_is_not_found() {
        let shards = Sharded::new("users", vec!["a", "b"], Policy::Naive);
        assert_eq!(shards.of("usr-0000000000000007").unwrap().1, &"a");
        assert_eq!(shards.of("usr-1000000000000007").unwrap().1, &"b");
        let status = shards.of("usr-2000000000000007").err().unwrap();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(status.message().contains("shard 3 of users, which runs as 2 shard(s): no such user"), "{status:?}");
        assert_eq!(shards.of("garbage").unwrap().0, 0, "shard 1 says what is wrong with it");
        let ids: Vec<String> =
            ["prd-1000000000000001", "prd-0000000000000002", "prd-4000000000000003", "prd-1000000000000004"]
                .map(String::from)
                .into();
        let groups = by_shard(&ids);
        assert_eq!(groups[&0], ["prd-0000000000000002"]);
        assert_eq!(groups[&1], ["prd-1000000000000001", "prd-1000000000000004"]);
        assert_eq!(groups[&4], ["prd-4000000000000003"]);
    }
}
