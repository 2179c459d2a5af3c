// simple-peer's package entry needs Node globals under Vite; its prebuilt browser bundle
// works as is (ARCHITECTURE.md). Same API as the typed package entry.
declare module 'simple-peer/simplepeer.min.js' {
  import SimplePeer from 'simple-peer';
  export default SimplePeer;
}
