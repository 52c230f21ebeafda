-- Watch: the mails of these alerts were sent: their pending notice becomes the notified state.
-- Parameters: ids, notices (the notice each id was mailed for: a newer pending notice is left pending), at.
UPDATE alert a
SET notified_state = n.notice, last_notified = %(at)s, notifications = a.notifications + 1,
    pending_notice = NULL, updated_at = now()
FROM unnest(%(ids)s::bigint[], %(notices)s::text[]) AS n (id, notice)
WHERE a.id = n.id AND a.pending_notice = n.notice;
