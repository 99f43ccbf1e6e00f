// Messages grouped into conversations by the other party's number, newest
// conversation first, each thread oldest message first.
export function groupConversations(messages) {
  const by = new Map()
  for (const m of messages) {
    const peer = m.direction === 'outbound' ? m.to_number : m.from_number
    if (!by.has(peer)) by.set(peer, [])
    by.get(peer).push(m)
  }
  const out = []
  for (const [peer, msgs] of by) {
    msgs.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id - b.id))
    const last = msgs[msgs.length - 1]
    out.push({ peer, messages: msgs, last, unread: msgs.filter((m) => m.direction === 'inbound' && !m.is_read).length })
  }
  out.sort((a, b) => (a.last.created_at < b.last.created_at ? 1 : -1))
  return out
}
