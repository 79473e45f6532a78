//! The simulated organisation: routing queues, users (agents) and presence
//! definitions, with stable ids and realistic names. The REST listings of
//! it are `http::directory`; the control API adds and removes entries.
//!
//! Queues and users can be added and removed at run time (control API).
//! A removed entry stays in its vector as a tombstone: indexes held
//! elsewhere (queue members) stay valid, and the n-th entry ever created
//! keeps its stable id, so two runs making the same calls see the same ids.

use std::collections::HashMap;

use crate::ids::stable_uuid;

// Namespaces of `stable_uuid`, one per kind of entity.
const NS_QUEUE: u64 = 0x51;
const NS_USER: u64 = 0x52;
const NS_PRESENCE: u64 = 0x53;
const NS_ORG: u64 = 0x54;

/// Most queues (and, separately, users) ever created in one run, removed
/// ones included: bounds the memory the control API can make us use.
pub(crate) const MAX_ENTRIES: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    Voice,
    Chat,
    Email,
    Message,
}

impl Media {
    /// As in analytics groups (`"mediaType":"voice"`).
    pub fn lower(self) -> &'static str {
        match self {
            Media::Voice => "voice",
            Media::Chat => "chat",
            Media::Email => "email",
            Media::Message => "message",
        }
    }

    /// As in detail events (`"mediaType":"VOICE"`).
    pub fn upper(self) -> &'static str {
        match self {
            Media::Voice => "VOICE",
            Media::Chat => "CHAT",
            Media::Email => "EMAIL",
            Media::Message => "MESSAGE",
        }
    }

    /// The participant field holding this media's communications.
    pub fn communications_key(self) -> &'static str {
        match self {
            Media::Voice => "calls",
            Media::Chat => "chats",
            Media::Email => "emails",
            Media::Message => "messages",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Queue {
    pub id: String,
    pub name: String,
    pub media: Media,
    /// Indexes into `Directory::users` (removed users are skipped by readers).
    pub members: Vec<usize>,
    pub created_ms: u64,
    /// Removed through the control API: not listed, not subscribable, no events.
    pub removed: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub department: &'static str,
    pub title: &'static str,
    /// Removed through the control API: not listed, not subscribable, no events.
    pub removed: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Presence {
    pub id: String,
    pub system_presence: &'static str,
}

#[derive(Debug)]
pub(crate) struct Directory {
    pub queues: Vec<Queue>,
    pub users: Vec<User>,
    pub presences: Vec<Presence>,
    pub division_id: String,
    pub organization_id: String,
    queue_index: HashMap<String, usize>,
    user_index: HashMap<String, usize>,
}

const QUEUE_BASES: &[&str] = &[
    "Sales",
    "Billing",
    "Technical Support",
    "Customer Care",
    "Retention",
    "Collections",
    "Claims",
    "Onboarding",
    "Priority Accounts",
    "Returns",
    "Shipping",
    "Warranty",
    "Fraud Prevention",
    "Appointments",
    "Renewals",
];
const QUEUE_MEDIA: &[(Media, &str)] = &[
    (Media::Voice, ""),
    (Media::Chat, " Chat"),
    (Media::Email, " Email"),
    (Media::Message, " Messaging"),
];
const FIRST_NAMES: &[&str] = &[
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amelia",
    "Oliver",
    "Sophia",
    "Elijah",
    "Mia",
    "Lucas",
    "Isabella",
    "Mateo",
    "Charlotte",
    "Levi",
    "Ava",
    "Hiro",
    "Aisha",
    "Lukas",
    "Priya",
    "Tomás",
];
const LAST_NAMES: &[&str] = &[
    "Martin",
    "Schmidt",
    "Okafor",
    "Nakamura",
    "García",
    "Kowalski",
    "Dubois",
    "Rossi",
    "Andersson",
    "Patel",
    "Murphy",
    "Novak",
    "Silva",
    "Jensen",
    "O'Brien",
];
const DEPARTMENTS: &[&str] = &[
    "Customer Service",
    "Sales",
    "Technical Support",
    "Collections",
];
const TITLES: &[&str] = &["Contact Center Agent", "Senior Agent", "Team Lead"];
const SYSTEM_PRESENCES: &[&str] = &[
    "Available",
    "Busy",
    "Away",
    "Break",
    "Meal",
    "Meeting",
    "Training",
    "On Queue",
    "Offline",
    "Idle",
];

/// The n-th user ever created (stable id and name).
fn make_user(i: usize) -> User {
    let first = FIRST_NAMES[i % FIRST_NAMES.len()];
    // (row + column) walks every first/last pair once per 300 users.
    let last = LAST_NAMES[(i / FIRST_NAMES.len() + i % FIRST_NAMES.len()) % LAST_NAMES.len()];
    // Beyond 300 users names repeat; a number keeps them unique.
    let round = i / (FIRST_NAMES.len() * LAST_NAMES.len());
    let name = if round == 0 {
        format!("{first} {last}")
    } else {
        format!("{first} {last} {}", round + 1)
    };
    let email = format!("{}@example.com", email_local_part(&name));
    User {
        id: stable_uuid(NS_USER, i as u64).to_string(),
        name,
        email,
        department: DEPARTMENTS[i % DEPARTMENTS.len()],
        title: TITLES[if i % 10 == 9 { 2 } else { i % 2 }],
        removed: false,
    }
}

/// The n-th queue ever created (stable id and name); `members` chosen by
/// the caller.
fn make_queue(i: usize, members: Vec<usize>) -> Queue {
    let combos = QUEUE_BASES.len() * QUEUE_MEDIA.len();
    let base = QUEUE_BASES[(i / QUEUE_MEDIA.len()) % QUEUE_BASES.len()];
    let (media, suffix) = QUEUE_MEDIA[i % QUEUE_MEDIA.len()];
    let round = i / combos;
    let name = if round == 0 {
        format!("{base}{suffix}")
    } else {
        format!("{base}{suffix} {}", round + 1)
    };
    Queue {
        id: stable_uuid(NS_QUEUE, i as u64).to_string(),
        name,
        media,
        members,
        // 2024-01-15T09:30:00Z plus a day per queue.
        created_ms: 1_705_311_000_000 + i as u64 * 86_400_000,
        removed: false,
    }
}

/// Up to five agents for queue `i`, spread over `candidates` (user indexes).
fn pick_members(i: usize, candidates: &[usize]) -> Vec<usize> {
    let n = candidates.len();
    let mut members: Vec<usize> = (0..n.min(5)).map(|j| candidates[(i * 3 + j) % n]).collect();
    members.sort_unstable();
    members.dedup();
    members
}

/// A directory change the control API asked for and that cannot be made.
#[derive(Debug)]
pub(crate) enum DirectoryError {
    /// The kind's [`MAX_ENTRIES`] would be exceeded.
    Full,
    /// No live entry with that id.
    NotFound,
}

impl Directory {
    pub fn new(queue_count: usize, user_count: usize) -> Self {
        let users: Vec<User> = (0..user_count).map(make_user).collect();
        let everyone: Vec<usize> = (0..user_count).collect();
        let queues: Vec<Queue> = (0..queue_count)
            .map(|i| make_queue(i, pick_members(i, &everyone)))
            .collect();

        let presences = SYSTEM_PRESENCES
            .iter()
            .enumerate()
            .map(|(i, p)| Presence {
                id: stable_uuid(NS_PRESENCE, i as u64).to_string(),
                system_presence: p,
            })
            .collect();

        Directory {
            queue_index: queues
                .iter()
                .enumerate()
                .map(|(i, q)| (q.id.clone(), i))
                .collect(),
            user_index: users
                .iter()
                .enumerate()
                .map(|(i, u)| (u.id.clone(), i))
                .collect(),
            queues,
            users,
            presences,
            division_id: stable_uuid(NS_ORG, 1).to_string(),
            organization_id: stable_uuid(NS_ORG, 2).to_string(),
        }
    }

    /// A queue that exists (not removed).
    pub fn queue(&self, id: &str) -> Option<&Queue> {
        self.queue_index
            .get(id)
            .map(|&i| &self.queues[i])
            .filter(|q| !q.removed)
    }

    /// A user that exists (not removed).
    pub fn user(&self, id: &str) -> Option<&User> {
        self.user_index
            .get(id)
            .map(|&i| &self.users[i])
            .filter(|u| !u.removed)
    }

    /// Whether `id` names a queue or user that was removed: its topics get
    /// no more events (an unknown id, e.g. in a `/sim/generate` topic, does).
    pub fn is_removed(&self, id: &str) -> bool {
        let queue = self.queue_index.get(id).map(|&i| self.queues[i].removed);
        let user = self.user_index.get(id).map(|&i| self.users[i].removed);
        queue.or(user).unwrap_or(false)
    }

    pub fn live_queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.iter().filter(|q| !q.removed)
    }

    pub fn live_users(&self) -> impl Iterator<Item = &User> {
        self.users.iter().filter(|u| !u.removed)
    }

    /// The queue's members that still exist.
    pub fn members<'a>(&'a self, queue: &'a Queue) -> impl Iterator<Item = &'a User> + 'a {
        queue
            .members
            .iter()
            .map(|&i| &self.users[i])
            .filter(|u| !u.removed)
    }

    /// A random live queue (`None` when there is none). Bounded: a few
    /// random draws, then the first live queue after the last draw.
    pub fn random_queue(&self, rng: &mut impl rand::Rng) -> Option<&Queue> {
        if self.queues.is_empty() {
            return None;
        }
        let mut start = 0;
        for _ in 0..8 {
            start = rng.gen_range(0..self.queues.len());
            if !self.queues[start].removed {
                return Some(&self.queues[start]);
            }
        }
        self.live_from(start)
    }

    /// The first live queue at or after index `start` (wrapping around).
    pub fn live_from(&self, start: usize) -> Option<&Queue> {
        let n = self.queues.len();
        (0..n)
            .map(|k| &self.queues[(start + k) % n])
            .find(|q| !q.removed)
    }

    /// Creates `count` queues with fresh stable ids, each with up to five
    /// existing users as members; returns their ids.
    pub fn add_queues(&mut self, count: usize) -> Result<Vec<String>, DirectoryError> {
        if self.queues.len() + count > MAX_ENTRIES {
            return Err(DirectoryError::Full);
        }
        let live_users: Vec<usize> = (0..self.users.len())
            .filter(|&i| !self.users[i].removed)
            .collect();
        let first = self.queues.len();
        let ids = (first..first + count)
            .map(|i| {
                let queue = make_queue(i, pick_members(i, &live_users));
                let id = queue.id.clone();
                self.queue_index.insert(id.clone(), i);
                self.queues.push(queue);
                id
            })
            .collect();
        Ok(ids)
    }

    /// Creates `count` users with fresh stable ids; returns their ids.
    pub fn add_users(&mut self, count: usize) -> Result<Vec<String>, DirectoryError> {
        if self.users.len() + count > MAX_ENTRIES {
            return Err(DirectoryError::Full);
        }
        let first = self.users.len();
        let ids = (first..first + count)
            .map(|i| {
                let user = make_user(i);
                let id = user.id.clone();
                self.user_index.insert(id.clone(), i);
                self.users.push(user);
                id
            })
            .collect();
        Ok(ids)
    }

    pub fn remove_queue(&mut self, id: &str) -> Result<(), DirectoryError> {
        match self.queue_index.get(id).map(|&i| &mut self.queues[i]) {
            Some(q) if !q.removed => {
                q.removed = true;
                Ok(())
            }
            _ => Err(DirectoryError::NotFound),
        }
    }

    pub fn remove_user(&mut self, id: &str) -> Result<(), DirectoryError> {
        match self.user_index.get(id).map(|&i| &mut self.users[i]) {
            Some(u) if !u.removed => {
                u.removed = true;
                Ok(())
            }
            _ => Err(DirectoryError::NotFound),
        }
    }
}

/// `Tomás O'Brien` → `tomas.obrien`.
fn email_local_part(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('.'),
            'á' => Some('a'),
            'í' => Some('i'),
            c if c.is_ascii_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn directory_is_stable_and_unique() {
        let a = Directory::new(60, 20);
        let b = Directory::new(60, 20);
        assert_eq!(a.queues[7].id, b.queues[7].id);
        assert_eq!(a.queues[0].name, "Sales");
        assert_eq!(a.queues[1].name, "Sales Chat");
        let names: HashSet<_> = a.queues.iter().map(|q| &q.name).collect();
        assert_eq!(names.len(), 60);
        let big = Directory::new(200, 400);
        assert_eq!(
            big.queues
                .iter()
                .map(|q| &q.name)
                .collect::<HashSet<_>>()
                .len(),
            200
        );
        assert_eq!(
            big.users
                .iter()
                .map(|u| &u.name)
                .collect::<HashSet<_>>()
                .len(),
            400
        );
        assert!(a.queue(&a.queues[3].id).is_some());
        assert!(a.user(&a.users[3].id).is_some());
        assert!(a.queues.iter().all(|q| !q.members.is_empty()));
    }

    #[test]
    fn entries_are_added_with_fresh_stable_ids_and_removed_as_tombstones() {
        let mut a = Directory::new(2, 3);
        let added = a.add_queues(2).unwrap();
        assert_eq!(added, [a.queues[2].id.clone(), a.queues[3].id.clone()]);
        assert_eq!(added[0], Directory::new(3, 3).queues[2].id, "stable ids");
        assert!(a.members(&a.queues[3]).count() > 0);
        let users = a.add_users(1).unwrap();
        assert!(a.user(&users[0]).is_some());

        let gone = a.queues[0].id.clone();
        a.remove_queue(&gone).unwrap();
        assert!(a.queue(&gone).is_none() && a.is_removed(&gone));
        assert!(matches!(
            a.remove_queue(&gone),
            Err(DirectoryError::NotFound)
        ));
        assert_eq!(a.live_queues().count(), 3);
        let member = a.queues[1].members[0];
        let member_id = a.users[member].id.clone();
        a.remove_user(&member_id).unwrap();
        assert!(a.members(&a.queues[1]).all(|u| u.id != member_id));
        assert!(!a.is_removed("3b2f6a52-8c3e-4d0e-9a55-2b7c1e0d4f11"));
        assert!(matches!(
            a.add_users(MAX_ENTRIES),
            Err(DirectoryError::Full)
        ));
    }

    #[test]
    fn empty_directory_is_fine() {
        let d = Directory::new(0, 0);
        assert!(d.queues.is_empty() && d.users.is_empty());
        let d = Directory::new(3, 0);
        assert!(d.queues.iter().all(|q| q.members.is_empty()));
    }
}
