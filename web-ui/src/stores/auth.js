// Who is logged in, and whether the first-run wizard is still open.
import { defineStore } from 'pinia'
import { call } from '../client.js'
import { setHomeCode } from '../home.js'

export const useAuth = defineStore('auth', {
  state: () => ({ user: null, loaded: false, setupNeeded: false }),
  getters: {
    isAdmin: (s) => s.user?.role === 'admin',
  },
  actions: {
    async load() {
      try {
        const s = await call('setupStatus')
        this.setupNeeded = !!(s?.needed ?? s?.setup_needed ?? s?.required)
      } catch { this.setupNeeded = false }
      if (this.setupNeeded) { this.user = null; this.loaded = true; return }
      try {
        const me = await call('me')
        this.user = me?.user ?? me
        setHomeCode(me?.country_code)
      } catch { this.user = null }
      this.loaded = true
    },
    async login(email, password) {
      const r = await call('login', { body: { email, password } })
      this.user = r?.user ?? r
      setHomeCode(r?.country_code)
      return this.user
    },
    async logout() {
      try { await call('logout') } finally { this.user = null }
    },
  },
})
