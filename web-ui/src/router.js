// Screens and who may see them. meta.role 'admin' screens are hidden from
// users (the API enforces the same server-side); meta.public screens need no
// session.
import { createRouter, createWebHistory } from 'vue-router'
import { useAuth } from './stores/auth.js'

export const routes = [
  { path: '/login', name: 'login', component: () => import('./views/LoginView.vue'), meta: { public: true, title: 'Log in' } },
  { path: '/setup', name: 'setup', component: () => import('./views/SetupView.vue'), meta: { public: true, title: 'Setup' } },
  { path: '/status', name: 'status', component: () => import('./views/StatusView.vue'), meta: { public: true, title: 'Status' } },
  { path: '/', name: 'dashboard', component: () => import('./views/DashboardView.vue'), meta: { nav: 'Dashboard' } },
  { path: '/calls', name: 'calls', component: () => import('./views/CallsView.vue'), meta: { nav: 'Calls' } },
  { path: '/voicemail', name: 'voicemail', component: () => import('./views/VoicemailView.vue'), meta: { nav: 'Voicemail' } },
  // Linked from the header's phone button, not the nav (it shows the phone's state).
  { path: '/phone', name: 'phone', component: () => import('./views/PhoneView.vue'), meta: { title: 'Phone' } },
  { path: '/messages', name: 'messages', component: () => import('./views/MessagesView.vue'), meta: { nav: 'Messages' } },
  { path: '/settings', name: 'settings', component: () => import('./views/UserSettingsView.vue'), meta: { nav: 'Settings' } },
  { path: '/admin/devices', name: 'devices', component: () => import('./views/admin/DevicesView.vue'), meta: { role: 'admin', nav: 'Devices' } },
  { path: '/admin/dids', name: 'dids', component: () => import('./views/admin/DidsView.vue'), meta: { role: 'admin', nav: 'Numbers' } },
  { path: '/admin/routing', name: 'routing', component: () => import('./views/admin/RoutingView.vue'), meta: { role: 'admin', nav: 'Routing' } },
  { path: '/admin/users', name: 'users', component: () => import('./views/admin/UsersView.vue'), meta: { role: 'admin', nav: 'Users' } },
  { path: '/admin/system', name: 'system', component: () => import('./views/admin/SystemView.vue'), meta: { role: 'admin', nav: 'System' } },
  { path: '/admin/security', name: 'security', component: () => import('./views/admin/SecurityView.vue'), meta: { role: 'admin', nav: 'Security' } },
  { path: '/:rest(.*)*', name: 'notfound', component: () => import('./views/NotFoundView.vue'), meta: { public: true, title: 'Not found' } },
]

/** The navigation links a role sees. */
export function navLinks(role) {
  return routes
    .filter((r) => r.meta?.nav && (!r.meta.role || r.meta.role === role))
    .map((r) => ({ to: r.path, label: r.meta.nav }))
}

/** Where a visitor goes before `to` renders (pure, for tests). */
export function guard(to, auth) {
  if (auth.setupNeeded && to.name !== 'setup' && to.name !== 'status') return { name: 'setup' }
  if (!auth.setupNeeded && to.name === 'setup') return { name: auth.user ? 'dashboard' : 'login' }
  if (to.meta?.public) return to.name === 'login' && auth.user ? { name: 'dashboard' } : true
  if (!auth.user) return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  if (to.meta?.role && to.meta.role !== auth.user.role) return { name: 'dashboard' }
  return true
}

export function makeRouter(history = createWebHistory()) {
  const router = createRouter({ history, routes })
  router.beforeEach(async (to) => {
    const auth = useAuth()
    if (!auth.loaded) await auth.load()
    return guard(to, auth)
  })
  router.afterEach((to) => {
    if (typeof document !== 'undefined') document.title = `${to.meta?.nav || to.meta?.title || ''} · GoSIP`.replace(/^ · /, '')
  })
  return router
}
