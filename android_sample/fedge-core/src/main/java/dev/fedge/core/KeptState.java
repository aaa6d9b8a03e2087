package dev.fedge.core;

import java.io.IOException;
import java.util.HashMap;
import java.util.Map;

/**
 * What a device keeps between rounds, never uploaded (device_runtime.kept_state.KeptState):
 * SCAFFOLD's control variate c_i and top-k's error-feedback residual, per task; in memory and,
 * with a {@link LocalState}, on the app's storage so that it survives the process (an Android
 * job's process ends after each run).
 */
public final class KeptState {
    public final Map<String, float[]> controls = new HashMap<>();
    public final Map<String, float[]> residuals = new HashMap<>();
    private LocalState storage;

    /** Keep the state in {@code storage} too (null: memory only). */
    public void storeIn(LocalState storage) {
        this.storage = storage;
    }

    private float[] recall(Map<String, float[]> memory, String kind, String taskId) throws IOException {
        if (!memory.containsKey(taskId) && storage != null) {
            float[] loaded = storage.load(kind + "-" + taskId);
            if (loaded != null) {
                memory.put(taskId, loaded);
            }
        }
        return memory.get(taskId);
    }

    private void remember(Map<String, float[]> memory, String kind, String taskId, float[] values)
            throws IOException {
        memory.put(taskId, values);
        if (storage != null) {
            storage.save(kind + "-" + taskId, values);
        }
    }

    public float[] controlFor(String taskId) throws IOException {
        return recall(controls, "control", taskId);
    }

    public void keepControl(String taskId, float[] ci) throws IOException {
        remember(controls, "control", taskId, ci);
    }

    public float[] residualFor(String taskId) throws IOException {
        return recall(residuals, "residual", taskId);
    }

    public void keepResidual(String taskId, float[] residual) throws IOException {
        remember(residuals, "residual", taskId, residual);
    }
}
