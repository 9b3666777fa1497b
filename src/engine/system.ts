// What the native engine can compute on: its devices, for `text2sql doctor` and users.
import { loadNative, type NativeDevice } from "./native.js";

/** The compute devices this build of the native engine can use (CPU always; CUDA/Metal when built). */
export function systemInfo(): { devices: NativeDevice[] } {
  return { devices: loadNative().systemInfo().devices };
}
