package dev.fedge.android;

import android.content.Context;
import android.content.Intent;
import android.content.IntentFilter;
import android.net.ConnectivityManager;
import android.net.Network;
import android.net.NetworkCapabilities;
import android.os.BatteryManager;
import android.os.PowerManager;
import android.os.StatFs;
import dev.fedge.core.DeviceState;

/** The check-in state from Android's own services (what the coordinator's eligibility rules read). */
final class AndroidDeviceState {
    private AndroidDeviceState() {
    }

    static DeviceState read(Context context) {
        // A sticky broadcast: registering a null receiver returns the last battery intent.
        Intent battery = context.registerReceiver(null, new IntentFilter(Intent.ACTION_BATTERY_CHANGED));
        boolean charging = false;
        double level = 0.0;
        if (battery != null) {
            charging = battery.getIntExtra(BatteryManager.EXTRA_PLUGGED, 0) != 0;
            int raw = battery.getIntExtra(BatteryManager.EXTRA_LEVEL, -1);
            int scale = battery.getIntExtra(BatteryManager.EXTRA_SCALE, -1);
            level = raw >= 0 && scale > 0 ? Math.min(1.0, raw / (double) scale) : 0.0;
        }
        ConnectivityManager connectivity = context.getSystemService(ConnectivityManager.class);
        boolean unmetered = false;
        Network network = connectivity.getActiveNetwork();
        if (network != null) {
            NetworkCapabilities caps = connectivity.getNetworkCapabilities(network);
            unmetered = caps != null && caps.hasCapability(NetworkCapabilities.NET_CAPABILITY_NOT_METERED);
        }
        PowerManager power = context.getSystemService(PowerManager.class);
        boolean idle = power.isDeviceIdleMode() || !power.isInteractive();
        double freeMb = new StatFs(context.getFilesDir().getAbsolutePath()).getAvailableBytes() / 1e6;
        return new DeviceState(charging, unmetered, idle, level, freeMb, "litert", LiteRtTrainer.runtimeVersion());
    }
}
