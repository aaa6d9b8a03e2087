package dev.fedge.android;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.robolectric.Shadows.shadowOf;

import android.app.Application;
import android.content.Intent;
import android.net.ConnectivityManager;
import android.net.NetworkCapabilities;
import android.os.BatteryManager;
import android.os.PowerManager;
import dev.fedge.core.DeviceState;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.robolectric.RobolectricTestRunner;
import org.robolectric.RuntimeEnvironment;
import org.robolectric.annotation.Config;
import org.robolectric.shadows.ShadowNetworkCapabilities;

/** The check-in state read from Android's (shadowed) battery, network and power services. */
@RunWith(RobolectricTestRunner.class)
@Config(sdk = 34)
public class AndroidDeviceStateTest {
    private static void battery(Application app, int plugged, int level, int scale) {
        Intent intent = new Intent(Intent.ACTION_BATTERY_CHANGED)
                .putExtra(BatteryManager.EXTRA_PLUGGED, plugged)
                .putExtra(BatteryManager.EXTRA_LEVEL, level)
                .putExtra(BatteryManager.EXTRA_SCALE, scale);
        app.sendStickyBroadcast(intent);
    }

    private static void network(Application app, boolean unmetered) {
        ConnectivityManager cm = app.getSystemService(ConnectivityManager.class);
        NetworkCapabilities caps = ShadowNetworkCapabilities.newInstance();
        if (unmetered) {
            shadowOf(caps).addCapability(NetworkCapabilities.NET_CAPABILITY_NOT_METERED);
        }
        shadowOf(cm).setNetworkCapabilities(cm.getActiveNetwork(), caps);
    }

    @Test
    public void aPluggedInIdlePhoneOnWifiIsEligible() {
        Application app = RuntimeEnvironment.getApplication();
        battery(app, BatteryManager.BATTERY_PLUGGED_AC, 80, 100);
        network(app, true);
        shadowOf(app.getSystemService(PowerManager.class)).setIsDeviceIdleMode(true);
        DeviceState s = AndroidDeviceState.read(app);
        assertTrue(s.charging);
        assertTrue(s.unmetered);
        assertTrue(s.idle);
        assertEquals(0.8, s.battery, 1e-9);
        assertTrue(s.freeStorageMb >= 0);
        assertEquals("litert", s.runtime);
        // LiteRT's native library does not load on the JVM: the state says so rather than failing.
        assertEquals(LiteRtTrainer.UNAVAILABLE, s.runtimeVersion);
    }

    @Test
    public void onBatteryOnMobileDataInUseIsNot() {
        Application app = RuntimeEnvironment.getApplication();
        battery(app, 0, 7, 200);
        network(app, false);
        PowerManager power = app.getSystemService(PowerManager.class);
        shadowOf(power).setIsDeviceIdleMode(false);
        shadowOf(power).setIsInteractive(true);
        DeviceState s = AndroidDeviceState.read(app);
        assertFalse(s.charging);
        assertFalse(s.unmetered);
        assertFalse(s.idle);
        assertEquals(0.035, s.battery, 1e-9);
        // The JSON the coordinator's eligibility rule reads.
        assertTrue(s.toJson().toString().contains("\"charging\":false"));
    }

    @Test
    public void aScreenOffPhoneCountsAsIdleAndAMissingBatteryIntentAsEmpty() {
        Application app = RuntimeEnvironment.getApplication();
        network(app, true);
        shadowOf(app.getSystemService(PowerManager.class)).setIsInteractive(false);
        DeviceState s = AndroidDeviceState.read(app);
        assertTrue(s.idle);
        assertFalse(s.charging);
        assertEquals(0.0, s.battery, 0.0);
    }
}
