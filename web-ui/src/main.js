import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import { makeRouter } from './router.js'
import { setUnauthorizedHandler } from './api.js'
import { useAuth } from './stores/auth.js'
import { applyTheme } from './theme.js'
import './style.css'

applyTheme()

const app = createApp(App).use(createPinia())
const router = makeRouter()
app.use(router)
setUnauthorizedHandler(() => {
  const auth = useAuth()
  if (auth.user) {
    auth.user = null
    router.push({ name: 'login', query: { ended: '1' } })
  }
})
app.mount('#app')
