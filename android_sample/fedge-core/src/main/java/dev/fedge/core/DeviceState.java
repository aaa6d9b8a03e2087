package dev.fedge.core;

import com.google.gson.JsonObject;

/** What a device reports at check-in; the coordinator's eligibility rules read these fields. */
public final class DeviceState {
    public final boolean charging;
    public final boolean unmetered;
    public final boolean idle;
    public final double battery;
    public final double freeStorageMb;
    public final String runtime;
    public final String runtimeVersion;

    public DeviceState(boolean charging, boolean unmetered, boolean idle, double battery, double freeStorageMb,
                       String runtime, String runtimeVersion) {
        if (!(battery >= 0 && battery <= 1)) {
            throw new IllegalArgumentException("battery must be in [0, 1], got " + battery);
        }
        this.charging = charging;
        this.unmetered = unmetered;
        this.idle = idle;
        this.battery = battery;
        this.freeStorageMb = freeStorageMb;
        this.runtime = runtime;
        this.runtimeVersion = runtimeVersion;
    }

    public JsonObject toJson() {
        JsonObject out = new JsonObject();
        out.addProperty("charging", charging);
        out.addProperty("unmetered", unmetered);
        out.addProperty("idle", idle);
        out.addProperty("battery", battery);
        out.addProperty("free_storage_mb", freeStorageMb);
        out.addProperty("runtime", runtime);
        out.addProperty("runtime_version", runtimeVersion);
        out.addProperty("supports_flex", false);
        return out;
    }
}
