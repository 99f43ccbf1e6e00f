// A list loaded page by page from the API (`?page=&per_page=` plus filters);
// understands {items,total} and {data,meta} answers.
import { reactive, ref, watch } from 'vue'
import { call } from '../client.js'

export function normalizePage(r) {
  if (Array.isArray(r)) return { items: r, total: r.length }
  const items = r?.items ?? r?.data ?? r?.results ?? []
  const total = r?.total ?? r?.meta?.total ?? r?.pagination?.total ?? items.length
  return { items, total }
}

export function usePaged(endpoint, { perPage = 20, filters = {}, params, mapFilters = (f) => f } = {}) {
  const items = ref([])
  const total = ref(0)
  const page = ref(1)
  const loading = ref(false)
  const error = ref('')
  const f = reactive({ ...filters })
  let seq = 0

  async function load() {
    const mine = ++seq
    loading.value = true
    error.value = ''
    try {
      const r = await call(endpoint, { params, q: { page: page.value, per_page: perPage, ...mapFilters({ ...f }) } })
      if (mine !== seq) return
      const n = normalizePage(r)
      items.value = n.items
      total.value = n.total
    } catch (e) {
      if (mine === seq) error.value = e.message
    } finally {
      if (mine === seq) loading.value = false
    }
  }
  watch(page, load)
  function applyFilters() { if (page.value !== 1) page.value = 1; else load() }
  return { items, total, page, perPage, loading, error, filters: f, load, applyFilters }
}
