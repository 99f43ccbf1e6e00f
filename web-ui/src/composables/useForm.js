// Form state: values, the API's field errors shown beside each field, a
// general error, and a busy flag.
import { reactive, ref } from 'vue'

export function useForm(initial = {}) {
  const values = reactive({ ...initial })
  const errors = ref({})
  const error = ref('')
  const busy = ref(false)

  // A second submit while one is running is ignored (buttons stay focusable
  // with aria-disabled instead of disabled, so keyboard focus is not lost).
  async function submit(fn) {
    if (busy.value) return new Promise(() => {})
    busy.value = true
    errors.value = {}
    error.value = ''
    try {
      return await fn(values)
    } catch (e) {
      const fe = typeof e.fieldErrors === 'function' ? e.fieldErrors() : {}
      errors.value = fe
      error.value = Object.keys(fe).length ? (e.message || 'Some fields are invalid') : (e.message || String(e))
      throw e
    } finally {
      busy.value = false
    }
  }
  function reset(v = initial) {
    for (const k of Object.keys(values)) delete values[k]
    Object.assign(values, v)
    errors.value = {}
    error.value = ''
  }
  return { values, errors, error, busy, submit, reset }
}
