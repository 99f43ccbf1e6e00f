// Live events from the server (Server-Sent Events on /api/events). The
// callback gets (type, data); the connection closes with the component.
import { onBeforeUnmount, onMounted, ref } from 'vue'
import { href } from '../client.js'

export function useEvents(onEvent, types = ['registration', 'call', 'calls', 'voicemail', 'message', 'active_calls']) {
  const connected = ref(false)
  let es = null
  onMounted(() => {
    if (typeof EventSource === 'undefined') return
    es = new EventSource(href('events'))
    es.onopen = () => { connected.value = true }
    es.onerror = () => { connected.value = false }
    const handle = (type) => (ev) => {
      let data = ev.data
      try { data = JSON.parse(ev.data) } catch { /* plain text */ }
      onEvent(type, data)
    }
    es.onmessage = handle('message_event')
    for (const t of types) es.addEventListener(t, handle(t))
  })
  onBeforeUnmount(() => es?.close())
  return { connected }
}
