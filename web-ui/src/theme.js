// Light, dark or the system's choice: the class "dark" on <html> drives the
// dark: styles; the choice is kept in this browser.
const KEY = 'gosip-theme'
export const THEMES = [
  { value: 'system', label: 'Auto' },
  { value: 'light', label: 'Light' },
  { value: 'dark', label: 'Dark' },
]

export function savedTheme() {
  try { return THEMES.some((t) => t.value === localStorage.getItem(KEY)) ? localStorage.getItem(KEY) : 'system' } catch { return 'system' }
}

let media = null
function paint(pref) {
  const dark = pref === 'dark' || (pref === 'system' && !!media?.matches)
  document.documentElement.classList.toggle('dark', dark)
}

// Applies `pref` now and, for "system", whenever the system changes.
export function applyTheme(pref = savedTheme()) {
  try { localStorage.setItem(KEY, pref) } catch { /* private mode: this page only */ }
  if (!media && typeof matchMedia === 'function') {
    media = matchMedia('(prefers-color-scheme: dark)')
    media.addEventListener?.('change', () => paint(savedTheme()))
  }
  paint(pref)
}
